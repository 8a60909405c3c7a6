#pragma once
// The per-area renderers behind render_ok (render.cpp dispatches by command name).
#include <stdio.h>

#include <string>

#include "config/rapidjson.h"

namespace up::ctl {

using Value = rapidjson::Value;

// render_users.cpp
void render_user_list(const Value& answer, FILE* out);
void render_user_edit(const std::string& cmd, const Value& request, const Value& answer, FILE* out);

// render_routes.cpp: the seed's per-user routing commands.
void render_set_proxy(const Value& request, const Value& answer, FILE* out);
void render_show_proxy(const Value& request, const Value& answer, FILE* out);
void render_assignments(const Value& answer, FILE* out);

// render_proxies.cpp
void render_proxy_list(const Value& answer, FILE* out);
void render_agents(const Value& answer, FILE* out);
void render_agent_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out);
void render_proxy_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out);

// render_runtime.cpp: status, reload, stats, connections, kick.
void render_status(const Value& answer, FILE* out);
void render_reload(const Value& answer, FILE* out);
void render_stats(const Value& answer, FILE* out);
void render_connections(const Value& answer, FILE* out);
void render_kick(const Value& request, const Value& answer, FILE* out);

// render_quota.cpp: usage, quota set, quota reset.
void render_usage(const Value& answer, FILE* out);
void render_quota_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out);

// Shared bits.
// "✓ Enabled", "✗ Disabled" or "✗ Down" (an absent "up" counts as up).
std::string proxy_status(const Value& obj);
// " (closed 1 tunnel)" / " (closed 3 tunnels)"; "" when the answer has no "closed" or it is 0.
std::string closed_suffix(const Value& answer);
// The string field, or `dash` when absent, null or empty.
std::string or_dash(const Value& obj, const char* key, const char* dash = "-");

}  // namespace up::ctl
