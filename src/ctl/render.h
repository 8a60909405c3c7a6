#pragma once
// Human output for the daemon's answers (without --json).
#include <stdio.h>

#include <string>

#include "config/rapidjson.h"

namespace up::ctl {

// A successful answer to `cmd`; `request` is what was sent (without any password).
void render_ok(const std::string& cmd, const rapidjson::Value& request,
               const rapidjson::Value& answer, FILE* out);

// A refusal (ok:false): "error: ..." and each entry of "errors".
void render_refusal(const std::string& cmd, const rapidjson::Value& answer, FILE* err);

}  // namespace up::ctl
