#pragma once
// rapidjson for the config loaders. rapidjson 1.1.0 (Debian 12) adds an offset to a null
// pointer when a parse stack first grows (fixed upstream after 1.1.0): harmless, but UBSan in
// the fuzzers stops on it, so that one check is switched off for rapidjson's own functions.
// The standard headers rapidjson uses come first, so the attribute reaches only rapidjson.
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <string>
#include <utility>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("pointer-overflow"))), apply_to = function)
#endif
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#if defined(__clang__)
#pragma clang attribute pop
#endif
