// uringproxy: the daemon. Thin: arguments, then src/control/daemon.cpp.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <string>

#ifdef UP_MIMALLOC
#include <mimalloc.h>
#endif

#include "agent/agent_main.h"
#include "control/daemon.h"

namespace {
void usage(FILE* out) {
  fprintf(out,
          "usage: uringproxy --config FILE [--check | --migrate] [--workers N]\n"
          "       uringproxy agent --config FILE [--check] [--workers N]\n"
          "       uringproxy --version | --help\n"
          "\n"
          "  --config FILE   main configuration (docs/configuration.md); default config/uringproxy.json\n"
          "  --check         validate FILE and the files it names, print every problem, exit\n"
          "  --migrate       create or upgrade the PostgreSQL store's schema (store.type\n"
          "                  \"postgres\"), exit\n"
          "  --workers N     worker threads (0 = one per CPU); overrides \"workers\"\n"
          "  agent           run as a reverse agent: dial the gateway in agent.json and serve\n"
          "                  its tunnels (docs/agent-protocol.md, docs/configuration.md)\n"
          "\n"
          "Signals: SIGHUP reloads; SIGTERM/SIGINT stop accepting and drain tunnels.\n");
}
}  // namespace

int main(int argc, char** argv) {
  static const option longopts[] = {{"config", required_argument, nullptr, 'c'},
                                    {"check", no_argument, nullptr, 'k'},
                                    {"migrate", no_argument, nullptr, 'm'},
                                    {"workers", required_argument, nullptr, 'w'},
                                    {"version", no_argument, nullptr, 'v'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
#ifdef UP_MIMALLOC
  // 2 MiB pages for mimalloc's segments (transparent huge pages, by madvise): loading 100,000
  // users touches ~120 MiB, and with 4 KiB pages page faults took half of the start-up's CPU
  // (bench/RESULTS.md, "Fleet and scale"). MIMALLOC_LARGE_OS_PAGES=0 in the environment wins.
  if (getenv("MIMALLOC_LARGE_OS_PAGES") == nullptr) {
    mi_option_enable(mi_option_large_os_pages);
    mi_option_set(mi_option_eager_commit_delay, 0);
  }
#endif
  // `uringproxy agent ...`: the same options, for agent.json.
  bool agent_mode = argc > 1 && std::string(argv[1]) == "agent";
  if (agent_mode) {
    --argc;
    ++argv;
  }
  up::DaemonOptions opts;
  opts.config_path = agent_mode ? "config/agent.json" : "config/uringproxy.json";
  bool check = false;
  bool migrate = false;
  int c;
  while ((c = getopt_long(argc, argv, "c:kw:vh", longopts, nullptr)) != -1) {
    switch (c) {
      case 'c': opts.config_path = optarg; break;
      case 'k': check = true; break;
      case 'm': migrate = true; break;
      case 'w': {
        char* end = nullptr;
        long n = strtol(optarg, &end, 10);
        if (!end || *end || n < 0 || n > 1024) {
          fprintf(stderr, "uringproxy: --workers wants a number from 0 to 1024\n");
          return 2;
        }
        opts.workers = static_cast<int>(n);
        break;
      }
      case 'v': printf("uringproxy %s\n", URINGPROXY_VERSION); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    usage(stderr);
    return 2;
  }
  if (agent_mode) {
    if (migrate) {
      fprintf(stderr, "uringproxy agent: --migrate is for the gateway's store only\n");
      return 2;
    }
    return check ? up::check_agent_config(opts.config_path)
                 : up::run_agent(opts.config_path, opts.workers);
  }
  if (migrate) return up::migrate(opts.config_path);
  return check ? up::check_config(opts.config_path) : up::run_daemon(opts);
}
