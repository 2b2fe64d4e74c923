/* semrep: the command line. `semrep run | stage | bench | info`. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "comm/comm.h"

static void usage(FILE *out)
{
    fputs("usage: semrep COMMAND [ARGS]\n"
          "  run CONF        run the stages the conf enables, in order\n"
          "  stage NAME CONF run one stage (train, phi, stats, cluster, reconstruct, report)\n"
          "  bench [OPTIONS] measure the engine's passes against the machine's sgemm\n"
          "  info CONF|FILE  what a conf or a file of this project holds\n"
          "semrep COMMAND --help for each command's options.\n",
          out);
}

static const char *const stages[] = {"train", "phi", "stats", "cluster", "reconstruct", "report"};

/* Until the stages and the configuration exist, `run` says so and runs the
 * one thing that does: the engine benchmark. */
static int cmd_run(int argc, char **argv, semrep_comm *comm)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fputs("usage: semrep run CONF\n", argc < 2 ? stderr : stdout);
        return argc < 2 ? SR_EXIT_USAGE : SR_EXIT_OK;
    }
    FILE *conf = fopen(argv[1], "r");
    if (!conf) {
        if (comm->rank == 0) fprintf(stderr, "semrep: error: cannot read the conf %s; check the path\n", argv[1]);
        return SR_EXIT_FAILED;
    }
    fclose(conf);
    if (comm->rank == 0) {
        printf("semrep run %s: %d ranks\n", argv[1], comm->size);
        printf("not built yet: reading the conf, and the stages");
        for (size_t s = 0; s < sizeof stages / sizeof *stages; s++) printf(" %s", stages[s]);
        printf(".\nrunning what exists: the engine benchmark on SPEC.md's default shape.\n\n");
        fflush(stdout);
    }
    char *bench_argv[] = {"bench", NULL};
    return sr_cmd_bench(1, bench_argv, comm);
}

static int not_built(const char *what, semrep_comm *comm)
{
    if (comm->rank == 0)
        fprintf(stderr, "semrep: error: `semrep %s` is not built yet; `semrep bench` is what runs today\n", what);
    return SR_EXIT_FAILED;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SR_EXIT_USAGE : SR_EXIT_OK;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") && strcmp(cmd, "stage") && strcmp(cmd, "bench") && strcmp(cmd, "info")) {
        fprintf(stderr, "semrep: error: unknown command '%s'\n", cmd);
        usage(stderr);
        return SR_EXIT_USAGE;
    }
    semrep_comm comm;
    sr_comm_init(&comm, &argc, &argv);
    int status;
    if (!strcmp(cmd, "bench"))
        status = sr_cmd_bench(argc - 1, argv + 1, &comm);
    else if (!strcmp(cmd, "run"))
        status = cmd_run(argc - 1, argv + 1, &comm);
    else
        status = not_built(cmd, &comm);
    sr_comm_finalize();
    return status;
}
