#pragma once
// Aligned text tables: columns padded to their widest cell (counted in characters, so the
// seed's ✓/✗ marks line up), separated by three spaces; the last column is not padded.
#include <stdio.h>

#include <string>
#include <vector>

namespace up::ctl {

class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t size() const { return rows_.size() - 1; }
  void print(FILE* out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Display width of UTF-8 text (one per code point; no wide characters in our tables).
size_t text_width(const std::string& s);

}  // namespace up::ctl
