#pragma once
// Reading one operator file: JSON (with comments) to a rapidjson tree, then object by object with
// every field accounted for. Each problem becomes one sentence "<file>: <field>: <what and fix>"
// in Diagnostics; readers keep going after a problem so the operator sees all of them at once.
#include "config/rapidjson.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "uringproxy/config.h"

namespace up::config {

// Messages for one file, prefixed with the path as the operator gave it.
class FileDiagnostics {
 public:
  FileDiagnostics(std::string file, Diagnostics& diag) : file_(std::move(file)), diag_(diag) {}
  void error(const std::string& field, const std::string& message);
  void warning(const std::string& field, const std::string& message);
  // "<file>:<line>:<column>: <message>", for syntax errors.
  void error_at(size_t line, size_t column, const std::string& message);
  const std::string& file() const { return file_; }
  size_t error_count() const { return diag_.errors.size(); }

 private:
  std::string file_;
  Diagnostics& diag_;
};

// Parses text as JSON with comments and trailing commas; on a syntax error reports
// "<file>:<line>:<column>: ..." and returns false.
bool parse_json(const std::string& text, FileDiagnostics& fd, rapidjson::Document& doc);

// "a string", "an array", ... for type-mismatch messages.
const char* json_type_name(const rapidjson::Value& v);

// Quotes a value for a message, escaping control characters and capping the length so a
// hostile file cannot flood the log.
std::string quote(const std::string& s);

// Levenshtein distance, capped: returns limit + 1 as soon as the distance exceeds limit.
size_t edit_distance(const std::string& a, const std::string& b, size_t limit);

// Walks one JSON object. Every key the loader asks about is "known"; finish() reports the keys
// the loader never asked about as unknown fields, with a "did you mean" when one is close.
class ObjectReader {
 public:
  ObjectReader(FileDiagnostics& fd, const rapidjson::Value& obj, std::string path);

  // The member or nullptr; marks key as known. Duplicate keys are reported once, here.
  const rapidjson::Value* find(const char* key);
  // Marks key as known without reading it (harmless fields other tools write).
  void ignore(const char* key) { known_.emplace_back(key); ignored_.insert(key); }
  bool has(const char* key);

  // Typed getters: absent leaves `out` unchanged and returns false; a wrong type or range is
  // reported and returns false. `required` reports absence too.
  bool get_string(const char* key, std::string& out, bool required = false,
                  bool allow_empty = false);
  // A file path, resolved against `dir` (the file's own directory) unless absolute.
  bool get_path(const char* key, const std::string& dir, std::string& out, bool required = false);
  bool get_bool(const char* key, bool& out);
  bool get_uint(const char* key, uint64_t& out, uint64_t min, uint64_t max,
                bool required = false);
  template <typename T>
  bool get_uint_as(const char* key, T& out, uint64_t min, uint64_t max, bool required = false) {
    uint64_t v = out;
    if (!get_uint(key, v, min, max, required)) return false;
    out = static_cast<T>(v);
    return true;
  }
  // An array of strings; each element is passed to `check` (which returns "" when fine, else the
  // reason and fix) and reported as field[i].
  bool get_string_array(const char* key, std::vector<std::string>& out,
                        std::string (*check)(const std::string&) = nullptr);
  // An object member for nested reading; a wrong type is reported.
  const rapidjson::Value* get_object(const char* key, bool required = false);
  const rapidjson::Value* get_array(const char* key, bool required = false);

  std::string field(const std::string& key) const;
  const std::string& path() const { return path_; }
  FileDiagnostics& diag() { return fd_; }
  void error(const std::string& key, const std::string& message) { fd_.error(field(key), message); }

  // Reports unknown keys. Call after every find/get.
  void finish();

 private:
  FileDiagnostics& fd_;
  const rapidjson::Value& obj_;
  std::string path_;
  std::vector<std::string> known_;
  std::set<std::string> ignored_;
  std::set<std::string> duplicates_reported_;
};

// The data files' shape, {"<key>": [...]} and nothing else: parses text into doc and returns
// the array, or nullptr after reporting why (syntax, top-level type, missing or not an array,
// unknown fields beside it).
const rapidjson::Value* parse_json_list(const std::string& text, FileDiagnostics& fd,
                                        rapidjson::Document& doc, const char* key);

// "listeners" + 2 -> "listeners[2]"
std::string index_path(const std::string& path, size_t i);

// An entry of a list was left out: with `to`, the errors it added to diag since `since` move
// there (the entry is skipped and reported, not fatal); without, they stay.
void move_errors_since(Diagnostics& diag, size_t since, std::vector<std::string>* to);

// Resolves value against dir (absolute) unless it is absolute already; lexically normalised.
std::string resolve_path(const std::string& dir, const std::string& value);
// The absolute form of a path given on the command line, and its directory.
std::string absolute_path(const std::string& path);
std::string parent_dir(const std::string& absolute);
// How to show an absolute path to the operator: relative to the working directory when it lies
// beneath it, else absolute.
std::string display_path(const std::string& absolute);

}  // namespace up::config
