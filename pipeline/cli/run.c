/* semrep run and semrep stage. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "stages/model.h"
#include "stages/stage.h"

/* The stages the conf enables, in order. Train runs only when there is no
 * model yet (the default conf ships one); stages not built yet are named. */
int sr_cmd_run(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] = "usage: semrep run CONF [--set KEY=VALUE]...\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, NULL, 1, 1, usage, comm, &args, &done);
    if (status || done) return status;
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[0], &args, comm, &conf))) return status;
    char model[SR_PATH_MAX + 32];
    sr_model_checkpoint_path(&conf, model, sizeof model);
    if (comm->rank == 0) printf("semrep run %s: %d rank(s), output in %s\n", conf.source, comm->size, conf.output_dir);
    for (int s = 0; s < sr_stage_count && !status; s++) {
        const sr_stage *stage = &sr_stages[s];
        if (!stage->run) continue;
        if (!strcmp(stage->name, "train") && access(model, F_OK) == 0) {
            if (comm->rank == 0) printf("train: the model is %s; not training\n", model);
            continue;
        }
        status = stage->run(&conf, comm) ? SR_EXIT_FAILED : SR_EXIT_OK;
    }
    if (comm->rank == 0 && !status) {
        printf("not built yet:");
        for (int s = 0; s < sr_stage_count; s++)
            if (!sr_stages[s].run) printf(" %s", sr_stages[s].name);
        printf(" (the results so far are in %s)\n", conf.output_dir);
    }
    sr_conf_free(&conf);
    return status;
}

int sr_cmd_stage(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] =
        "usage: semrep stage NAME CONF [--set KEY=VALUE]...\n"
        "  NAME: train, denoise-eval, phi, stats, cluster, reconstruct or report\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, NULL, 2, 2, usage, comm, &args, &done);
    if (status || done) return status;
    const sr_stage *stage = sr_stage_find(args.positional[0]);
    if (!stage) {
        sr_comm_error(comm, SR_EXIT_USAGE, "unknown stage '%s'", args.positional[0]);
        if (comm->rank == 0) fputs(usage, stderr);
        return SR_EXIT_USAGE;
    }
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[1], &args, comm, &conf))) return status;
    status = stage->run ? (stage->run(&conf, comm) ? SR_EXIT_FAILED : SR_EXIT_OK)
                        : sr_comm_error(comm, SR_EXIT_FAILED, "stage %s is not built yet", stage->name);
    sr_conf_free(&conf);
    return status;
}
