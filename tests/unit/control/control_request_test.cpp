// parse_control_request (src/control/control_request.cpp): what it accepts, every refusal and its
// sentence, and that lines without a NUL get the answers Management::handle always gave.
#include "control/control_request.h"

#include <doctest/doctest.h>

#include "../../control_request_legacy.h"

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

using up::ControlRequest;
using up::max_request_bytes;
using up::parse_control_request;

namespace {

const std::string kShape = up::testing::kRequestShape;

struct Parsed {
  std::optional<ControlRequest> req;
  std::string error;
};

Parsed parse(std::string_view line) {
  Parsed p;
  p.req = parse_control_request(line, p.error);
  INFO("line: ", std::string(line.substr(0, 200)), " error: ", p.error);
  CHECK(p.req.has_value() == p.error.empty());
  return p;
}

// The request the line holds; fails the test when it is refused.
ControlRequest accept(std::string_view line) {
  Parsed p = parse(line);
  INFO("line: ", std::string(line.substr(0, 200)), " error: ", p.error);
  REQUIRE(p.req);
  CHECK(p.req->args.IsObject());
  return std::move(*p.req);
}

std::string refusal(std::string_view line) {
  Parsed p = parse(line);
  INFO("line: ", std::string(line.substr(0, 200)));
  CHECK_FALSE(p.req);
  return p.error;
}

// The old Management::handle's answer: its refusal, or "" and the command it dispatched on.
std::string legacy(const std::string& line, std::string& cmd) {
  rapidjson::Document doc;
  std::string refusal = up::testing::legacy_refusal(line, doc);
  if (refusal.empty()) cmd = doc["cmd"].GetString();
  return refusal;
}

std::string str(const rapidjson::Value& v, const char* key) {
  auto it = v.FindMember(key);
  REQUIRE(it != v.MemberEnd());
  REQUIRE(it->value.IsString());
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

TEST_CASE("requests without arguments") {
  for (const char* cmd : {"status", "reload", "stats", "user.list", "list-proxy-assignments",
                          "proxy.list", "connections"}) {
    ControlRequest r = accept(std::string("{\"cmd\":\"") + cmd + "\"}");
    CHECK(r.cmd == cmd);
    CHECK(r.args.MemberCount() == 1);
  }
  // Whitespace around and inside the object, and a UTF-8 BOM (rapidjson skips it), are fine.
  CHECK(accept(" \t{ \"cmd\" : \"status\" }\r\n ").cmd == "status");
  CHECK(accept("\xEF\xBB\xBF{\"cmd\":\"stats\"}").cmd == "stats");
}

TEST_CASE("requests with arguments keep them for the command") {
  ControlRequest add = accept(
      R"({"cmd":"user.add","username":"alice","password":"s3cret","proxy":null,)"
      R"("groups":["eu","staff"]})");
  CHECK(add.cmd == "user.add");
  CHECK(str(add.args, "username") == "alice");
  CHECK(str(add.args, "password") == "s3cret");
  CHECK(add.args["proxy"].IsNull());
  REQUIRE(add.args["groups"].IsArray());
  CHECK(add.args["groups"].Size() == 2);
  CHECK(str(add.args, "cmd") == "user.add");  // args is the whole object

  ControlRequest set = accept(R"({"username":"bob","proxy":"p1","cmd":"set-proxy"})");
  CHECK(set.cmd == "set-proxy");  // "cmd" need not come first
  CHECK(str(set.args, "proxy") == "p1");

  ControlRequest padd = accept(
      R"({"cmd":"proxy.add","id":"p2","type":"socks5","address":"10.0.0.1","port":1080,)"
      R"("username":"u","password":"p","group":"g","name":"n","test":false})");
  CHECK(padd.cmd == "proxy.add");
  REQUIRE(padd.args["port"].IsUint());
  CHECK(padd.args["port"].GetUint() == 1080);
  CHECK(padd.args["test"].IsFalse());

  for (const char* cmd : {"user.del", "user.passwd", "user.enable", "user.disable",
                          "show-proxy", "kick"}) {
    ControlRequest r = accept(std::string(R"({"cmd":")") + cmd + R"(","username":"carol"})");
    CHECK(r.cmd == cmd);
    CHECK(str(r.args, "username") == "carol");
  }
  for (const char* cmd : {"proxy.del", "proxy.enable", "proxy.disable", "proxy.test"})
    CHECK(accept(std::string(R"({"cmd":")") + cmd + R"(","id":"p1"})").cmd == cmd);
  CHECK(str(accept(R"({"cmd":"connections","user":"dave"})").args, "user") == "dave");
}

TEST_CASE("the parser does not judge command names or argument types") {
  // Unknown commands and wrong argument types are for the dispatcher and the commands.
  CHECK(accept(R"({"cmd":"frobnicate"})").cmd == "frobnicate");
  CHECK(accept(R"({"cmd":"kick","username":42})").args["username"].IsInt());
  CHECK(accept(R"({"cmd":"proxy.add","port":70000})").args["port"].GetUint() == 70000);
  // No UTF-8 validation, as before: the bytes are passed on as they are.
  CHECK(accept("{\"cmd\":\"st\xFF\"}").cmd == "st\xFF");
  CHECK(accept(R"({"cmd":"\u00e9t\u00e9"})").cmd == "\xC3\xA9t\xC3\xA9");
}

TEST_CASE("invalid JSON is refused with the offset and rapidjson's reason") {
  CHECK(refusal("{") == "invalid JSON at offset 1: Missing a name for object member.");
  CHECK(refusal(R"({"cmd":"status")") ==
        "invalid JSON at offset 15: Missing a comma or '}' after an object member.");
  CHECK(refusal(R"({"cmd":"status",})") ==
        "invalid JSON at offset 16: Missing a name for object member.");
  CHECK(refusal("   ") == "invalid JSON at offset 3: The document is empty.");
  CHECK(refusal("") == "invalid JSON at offset 0: The document is empty.");
  CHECK(refusal("{cmd:status}") == "invalid JSON at offset 1: Missing a name for object member.");
  CHECK(refusal(R"({"cmd":'status'})") == "invalid JSON at offset 7: Invalid value.");
  CHECK(refusal(R"({"cmd":"status"} x)") ==
        "invalid JSON at offset 17: The document root must not be followed by other values.");
  CHECK(refusal(R"({"cmd":"status"}{"cmd":"stats"})") ==
        "invalid JSON at offset 16: The document root must not be followed by other values.");
  // No comments, unlike the config files.
  CHECK(refusal(R"({"cmd":"status"} // hi)").rfind("invalid JSON at offset 17: ", 0) == 0);
  CHECK(refusal(R"({"cmd":"bad\q"})") ==
        "invalid JSON at offset 11: Invalid escape character in string.");
  // A line that opens with what cannot start a value is not "empty".
  CHECK(refusal("}") == "invalid JSON at offset 0: Invalid value.");
  CHECK(refusal(" ,") == "invalid JSON at offset 1: Invalid value.");
}

TEST_CASE("anything but an object with a non-empty string cmd is refused") {
  for (const char* line : {"[]", R"(["status"])", R"("status")", "42", "null", "true", "{}",
                           R"({"command":"status"})", R"({"CMD":"status"})", R"({"cmd":1})",
                           R"({"cmd":null})", R"({"cmd":true})", R"({"cmd":["status"]})",
                           R"({"cmd":{"name":"status"}})", R"({"cmd":""})"})
    CHECK(refusal(line) == kShape);
}

TEST_CASE("a line longer than the socket's limit is refused before parsing") {
  CHECK(max_request_bytes == 65536);
  CHECK(up::request_too_long_error() == "request longer than 65536 bytes");
  // Exactly at the limit still parses (padding is whitespace).
  std::string line = R"({"cmd":"status"})";
  line.append(max_request_bytes - line.size(), ' ');
  CHECK(accept(line).cmd == "status");
  line.push_back(' ');
  CHECK(refusal(line) == "request longer than 65536 bytes");
  // Even when it is not JSON at all.
  CHECK(refusal(std::string(10 * max_request_bytes, '{')) == "request longer than 65536 bytes");
}

TEST_CASE("embedded NUL bytes") {
  using namespace std::string_literals;
  // rapidjson reads a NUL as the end of input; the parser refuses what follows one.
  CHECK(refusal("{\"cmd\":\"status\"}\0junk"s) ==
        "invalid JSON at offset 16: The document root must not be followed by other values.");
  CHECK(refusal("{\"cmd\":\"status\"} \0"s) ==
        "invalid JSON at offset 17: The document root must not be followed by other values.");
  CHECK(refusal("\0{\"cmd\":\"status\"}"s) == "invalid JSON at offset 0: The document is empty.");
  CHECK(refusal("{\"cmd\":\"sta\0tus\"}"s) ==
        "invalid JSON at offset 11: Missing a closing quotation mark in string.");
  CHECK(refusal("{\"cmd\":\0\"status\"}"s) == "invalid JSON at offset 7: Invalid value.");
  // An escaped NUL would cut the name short ("status\u0000x" once ran status): no command.
  CHECK(refusal(R"({"cmd":"status\u0000x"})") == kShape);
  CHECK(refusal(R"({"cmd":"\u0000"})") == kShape);
  // In an argument it is kept whole; the commands decide.
  ControlRequest r = accept(R"({"cmd":"user.add","username":"a\u0000b"})");
  CHECK(str(r.args, "username") == "a\0b"s);
}

TEST_CASE("huge numbers") {
  CHECK(refusal(R"({"cmd":"kick","n":1e400})") ==
        "invalid JSON at offset 18: Number too big to be stored in double.");
  CHECK(refusal(R"({"cmd":"kick","n":-1e400})") ==
        "invalid JSON at offset 18: Number too big to be stored in double.");
  // Past 64 bits an integer becomes a double, as rapidjson always did.
  ControlRequest r = accept(
      R"({"cmd":"proxy.add","port":18446744073709551616,"big":)" + std::string(300, '9') +
      R"(,"tiny":1e-400,"max":18446744073709551615,"neg":-9223372036854775808})");
  CHECK(r.args["port"].IsDouble());
  CHECK(r.args["big"].IsDouble());
  CHECK(r.args["tiny"].IsDouble());
  CHECK(r.args["tiny"].GetDouble() == 0.0);
  CHECK(r.args["max"].IsUint64());
  CHECK(r.args["max"].GetUint64() == UINT64_MAX);
  CHECK(r.args["neg"].IsInt64());
  CHECK(r.args["neg"].GetInt64() == INT64_MIN);
}

TEST_CASE("deep nesting is neither a crash nor a problem") {
  // As deep as fits in a request: parsed without recursion.
  size_t depth = (max_request_bytes - 40) / 2;
  std::string deep = R"({"cmd":"status","a":)" + std::string(depth, '[') +
                     std::string(depth, ']') + "}";
  REQUIRE(deep.size() <= max_request_bytes);
  ControlRequest r = accept(deep);
  CHECK(r.cmd == "status");
  CHECK(r.args["a"].IsArray());
  std::string objects;
  for (size_t i = 0; i < 10000; ++i) objects += R"({"a":)";
  objects += "1" + std::string(10000, '}');
  CHECK(accept(R"({"cmd":"kick","x":)" + objects + "}").cmd == "kick");
  // Unclosed, and a bare array as deep as the limit allows.
  CHECK(refusal(std::string(max_request_bytes, '[')) ==
        "invalid JSON at offset 65536: Invalid value.");
  CHECK(refusal(R"({"cmd":"status","a":)" + std::string(depth, '[')) ==
        "invalid JSON at offset " + std::to_string(20 + depth) + ": Invalid value.");
}

TEST_CASE("duplicate keys: the first one counts, as before") {
  ControlRequest r = accept(R"({"cmd":"status","cmd":"reload"})");
  CHECK(r.cmd == "status");
  CHECK(r.args.MemberCount() == 2);
  // A first "cmd" that is not a string is not rescued by a second one.
  CHECK(refusal(R"({"cmd":1,"cmd":"status"})") == kShape);
  ControlRequest u = accept(R"({"cmd":"user.del","username":"a","username":"b"})");
  CHECK(str(u.args, "username") == "a");
}

TEST_CASE("without a NUL or an empty name, answers match the old Management::handle") {
  using namespace std::string_literals;
  std::string deep = std::string(3000, '[') + std::string(3000, ']');
  for (const std::string& line :
       {R"({"cmd":"status"})"s, " {\"cmd\":\"stats\"} \t"s, "\xEF\xBB\xBF{\"cmd\":\"reload\"}"s,
        "\xEF{\"cmd\":\"reload\"}"s, R"({"cmd":"user.add","username":"x","password":"y"})"s,
        R"({"cmd":"nope"})"s, R"({"cmd":"status","cmd":"x"})"s, R"({"cmd":2,"cmd":"x"})"s, "{"s,
        "}"s, "[1,2"s, R"({"cmd":"status"} {})"s, R"({"cmd":"status"},)"s, "tru"s, "nul"s,
        "-"s, "]"s, ":"s, "\xEF\xBB\xBF,"s, " \t}"s, "1."s, "1e"s, "01"s, R"({"a":1 "b":2})"s,
        R"({"a" 1})"s, R"({"cmd":"\ud800"})"s,
        R"({"cmd":"\ud800\u0041"})"s, R"({"cmd":"\x"})"s, "{\"cmd\":\"\x01\"}"s,
        R"({"cmd":"kick","n":1e400})"s, R"({"a":[1,2,]})"s, "[" + deep + "]"s, deep + "x"s,
        R"({"cmd":"status"})" + std::string(100, ' ') + "!"s, "{\"cmd\":\"status\"}\r"s}) {
    std::string cmd, error;
    std::string want = legacy(line, cmd);
    std::optional<ControlRequest> got = parse_control_request(line, error);
    INFO("line: ", line.substr(0, 100));
    if (want.empty()) {
      REQUIRE(got);
      CHECK(got->cmd == cmd);
    } else {
      CHECK_FALSE(got);
      CHECK(error == want);
    }
  }
}
