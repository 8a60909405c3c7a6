// Tests for src/config/agents_loader.cpp: agents_file records, and every error naming the file,
// the agent and the field.
#include <doctest/doctest.h>

#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::kSha512;

namespace {

struct Parsed {
  std::vector<Agent> agents;
  Diagnostics diag;
  bool ok = false;
};

Parsed parse(const std::string& text) {
  Parsed p;
  p.ok = parse_agents(text, "agents.json", p.agents, p.diag);
  INFO(all_messages(p.diag));
  CHECK(p.ok == p.diag.ok());
  return p;
}

std::string agent(const std::string& id, const std::string& extra = "") {
  std::string s = "{\"id\": \"" + id + "\", \"secret\": \"" + kSha512 + "\", \"group\": \"residential\"";
  if (!extra.empty()) s += ", " + extra;
  return s + "}";
}

}  // namespace

TEST_CASE("agents file: records load") {
  Parsed p = parse("{\"agents\": [" + agent("home-1") + "," + agent("home-2", R"("enabled": false)") + "]}");
  REQUIRE(p.ok);
  REQUIRE(p.agents.size() == 2);
  CHECK(p.agents[0].id == "home-1");
  CHECK(p.agents[0].secret_hash == kSha512);
  CHECK(p.agents[0].group == "residential");
  CHECK(p.agents[0].enabled);
  CHECK_FALSE(p.agents[1].enabled);
  CHECK(parse(R"({"agents": []})").ok);
}

TEST_CASE("agents file: each bad field named with the agent") {
  Parsed p = parse("{\"agents\": [" +
                   std::string(R"({"id": "home-1", "secret": "hunter2", "group": "residential"},)") +
                   R"({"id": "bad id", "secret": ")" + kSha512 + R"(", "group": "a.b"},)" +
                   R"({"id": "home-3", "group": "residential", "colour": 1},)" +
                   R"({"id": "home-4", "secret": 5, "enabled": "yes"},)" + agent("home-1") + ",7]}");
  CHECK_FALSE(p.ok);
  CHECK(has_error(p.diag, {"agents.json: agent \"home-1\" (agents[0]).secret: not a crypt(3) hash"}));
  CHECK(all_messages(p.diag).find("hunter2") == std::string::npos);
  CHECK(has_error(p.diag, {"agents.json: agents[1].id: \"bad id\" is not an agent id"}));
  CHECK(has_error(p.diag, {"agents.json: agents[1].group: \"a.b\" is not a group name"}));
  CHECK(has_error(p.diag, {"agents.json: agent \"home-3\" (agents[2]).secret: is required"}));
  CHECK(has_error(p.diag, {"agent \"home-3\" (agents[2])", "colour"}));
  CHECK(has_error(p.diag, {"agents.json: agent \"home-4\" (agents[3]).secret: must be a crypt(3) hash string, not a number"}));
  CHECK(has_error(p.diag, {"agent \"home-4\" (agents[3]).group"}));
  CHECK(has_error(p.diag, {"agent \"home-4\" (agents[3]).enabled"}));
  CHECK(has_error(p.diag, {"agents.json: agent \"home-1\" (agents[4]).id: is already agent \"home-1\" (agents[0]); agent ids must be unique"}));
  CHECK(has_error(p.diag, {"agents.json: agents[5]: must be an object"}));
}

TEST_CASE("agents file: the top level") {
  CHECK(has_error(parse("[]").diag, {"agents.json: the top level must be an object {\"agents\": [...]}"}));
  CHECK(has_error(parse("{}").diag, {"agents.json: agents"}));
  CHECK(has_error(parse("{\"agents\": [").diag, {"agents.json"}));
}
