#pragma once
// The scenarios. Each fills a Result (and its human line); the proxy's CPU and memory
// come from a ProcWatch sampled around the measured window.
#include "common.h"
#include "proc_stats.h"

namespace uload {

Result run_bulk(const Options& o, const ProcWatch& pw);
Result run_cps(const Options& o, const ProcWatch& pw);
Result run_latency(const Options& o, const ProcWatch& pw);
Result run_idle(const Options& o, const ProcWatch& pw);
Result run_udp(const Options& o, const ProcWatch& pw);
Result run_http(const Options& o, const ProcWatch& pw);

// Common head of every result: scenario, label, proxy.
void result_head(Result& r, const Options& o, const char* scenario);
// Exits with the reason the TLS client context could not be made.
[[noreturn]] void die_tls(const std::string& err);
// Human-readable error summary ("" when none).
std::string errors_text(const Errors& e);

}  // namespace uload
