// uringproxy: the daemon. Thin: arguments, then src/control/daemon.cpp.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "control/daemon.h"

namespace {
void usage(FILE* out) {
  fprintf(out,
          "usage: uringproxy --config FILE [--check | --migrate] [--workers N]\n"
          "       uringproxy --version | --help\n"
          "\n"
          "  --config FILE   main configuration (docs/configuration.md); default config/uringproxy.json\n"
          "  --check         validate FILE and the files it names, print every problem, exit\n"
          "  --migrate       create or upgrade the PostgreSQL store's schema (store.type\n"
          "                  \"postgres\"), exit\n"
          "  --workers N     worker threads (0 = one per CPU); overrides \"workers\"\n"
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
  up::DaemonOptions opts;
  opts.config_path = "config/uringproxy.json";
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
  if (migrate) return up::migrate(opts.config_path);
  return check ? up::check_config(opts.config_path) : up::run_daemon(opts);
}
