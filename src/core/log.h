#pragma once
// Operator-facing log lines on stderr: "2026-11-22T02:50:00.123Z info: message".
// One write(2) per line so lines from different threads never interleave.
#include <cstdarg>

namespace up::log {

enum class Level { info, warn, error };

void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace up::log

#define UP_INFO(...) ::up::log::write(::up::log::Level::info, __VA_ARGS__)
#define UP_WARN(...) ::up::log::write(::up::log::Level::warn, __VA_ARGS__)
#define UP_ERROR(...) ::up::log::write(::up::log::Level::error, __VA_ARGS__)
