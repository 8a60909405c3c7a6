#pragma once
// The command tree (CLI11): parses argv, builds the request, runs it; returns the exit code.
namespace up::ctl {

int run(int argc, char** argv);

}  // namespace up::ctl
