#pragma once
// Passwords for user add / user passwd / proxy add: only ever from stdin, never from argv.
#include <string>

namespace up::ctl {

// from_stdin (--password-stdin): one line from stdin, newline stripped. Otherwise, when stdin is
// a terminal and `may_prompt`, asks twice with echo off. Refuses an empty password. False with
// `error` set (a usage error: exit 2).
bool read_password(bool from_stdin, bool may_prompt, const std::string& what, std::string& out,
                   std::string& error);

// Overwrites a password in memory before it is freed.
void wipe(std::string& s);

}  // namespace up::ctl
