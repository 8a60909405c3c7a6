#pragma once
// Human forms of numbers for tables: byte counts, durations, host:port.
#include <cstdint>
#include <string>

namespace up::ctl {

std::string human_bytes(uint64_t n);      // "0 B", "512 B", "1.5 KiB", "12.0 MiB", "3.2 GiB"
std::string human_duration(uint64_t s);   // "42s", "3m05s", "2h03m", "4d02h"
std::string human_bps(uint64_t bps);      // "800 bit/s", "1.5 Mbit/s", "10 Gbit/s" (SI units)
std::string host_port(const std::string& host, uint64_t port);  // "[::1]:1080" for IPv6

}  // namespace up::ctl
