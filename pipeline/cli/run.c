/* semrep run and semrep stage. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "io/outdir.h"
#include "stages/model.h"
#include "stages/stage.h"

/* Rank 0 takes the output folder as semrep's (docs/usage.md: what a run may
 * write and delete), refusing a foreign one unless --adopt; all ranks agree. */
static int claim_output(const semrep_conf *conf, const sr_args *args, const semrep_comm *comm)
{
    char err[4 * SR_PATH_MAX] = "";
    int rc = 0;
    if (comm->rank == 0) {
        const char *data[2] = {!strcmp(conf->dataset.kind, "png") ? conf->dataset.path : NULL,
                               !strcmp(conf->train.dataset.kind, "png") ? conf->train.dataset.path : NULL};
        rc = sr_outdir_claim(conf->output_dir, sr_args_flag(args, "--adopt"), data, 2, err, sizeof err);
    }
    if (sr_comm_any(comm, rc)) return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err[0] ? err : "rank 0 failed");
    return SR_EXIT_OK;
}

static const char *const options[] = {"--adopt!", NULL};

/* Rank 0 asks whether the conf's model is there and finished; every rank
 * gets its answer (a rank's own view of the file could differ). */
static bool model_finished(const semrep_conf *conf, semrep_comm *comm, const char *model, char *err, size_t errlen)
{
    int finished = comm->rank == 0 && access(model, F_OK) == 0 && sr_model_finished(conf, err, errlen) == 1;
    sr_comm_bcast(comm, &finished, sizeof finished, 0);
    return finished;
}

/* Train runs when there is no model yet or its training is unfinished
 * (stopped by train.run_steps, a time limit or a kill: it resumes); a
 * finished model, or one from elsewhere (the default conf ships one), is
 * used as it is. No later stage runs on an unfinished model. */
static int train_unless_finished(const semrep_conf *conf, semrep_comm *comm, const sr_stage *train, const char *model)
{
    char err[2 * SR_PATH_MAX + 256] = "";
    if (model_finished(conf, comm, model, err, sizeof err)) {
        if (comm->rank == 0) printf("train: the model is %s; not training\n", model);
        return SR_EXIT_OK;
    }
    if (train->run(conf, comm)) return SR_EXIT_FAILED;
    if (model_finished(conf, comm, model, err, sizeof err)) return SR_EXIT_OK;
    if (comm->rank == 0) fprintf(stderr, "semrep: %s; the later stages did not run (exit status %d)\n", err, SR_EXIT_UNFINISHED);
    return SR_EXIT_UNFINISHED;
}

/* The stages the conf enables, in order. Train runs when the model is
 * missing or unfinished (train_unless_finished); a stage whose output is there for
 * the same conf and inputs is skipped (phi and reconstruct check that
 * themselves); an interrupted one resumes. */
int sr_cmd_run(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] = "usage: semrep run CONF [--adopt] [--set KEY=VALUE]...\n"
                                "  --adopt: share a non-empty output_dir that semrep did not make (docs/cli.md)\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, options, 1, 1, usage, comm, &args, &done);
    if (status || done) return status;
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[0], &args, comm, &conf))) return status;
    if ((status = claim_output(&conf, &args, comm))) return sr_conf_free(&conf), status;
    char model[SR_PATH_MAX + 32];
    sr_model_checkpoint_path(&conf, model, sizeof model);
    if (comm->rank == 0) printf("semrep run %s: %d rank(s), output in %s\n", conf.source, comm->size, conf.output_dir);
    for (int s = 0; s < sr_stage_count && !status; s++) {
        const sr_stage *stage = &sr_stages[s];
        if (!stage->run) continue;
        if (!strcmp(stage->name, "train")) {
            status = train_unless_finished(&conf, comm, stage, model);
            continue;
        }
        /* rank 0 decides, so that every rank skips alike */
        int skip = comm->rank == 0 && sr_stage_up_to_date(&conf, stage, model);
        sr_comm_bcast(comm, &skip, sizeof skip, 0);
        if (skip) {
            if (comm->rank == 0) printf("%s: up to date (same conf and inputs)\n", stage->name);
            continue;
        }
        status = stage->run(&conf, comm) ? SR_EXIT_FAILED : SR_EXIT_OK;
        if (!status && comm->rank == 0) sr_stage_record(&conf, stage, model);
    }
    for (int s = 0; s < sr_stage_count && comm->rank == 0 && !status; s++)
        if (!sr_stages[s].run) printf("not built yet: stage %s\n", sr_stages[s].name);
    sr_conf_free(&conf);
    return status;
}

int sr_cmd_stage(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] =
        "usage: semrep stage NAME CONF [--adopt] [--set KEY=VALUE]...\n"
        "  NAME: train, denoise-eval, phi, stats, cluster, reconstruct or report\n"
        "  --adopt: share a non-empty output_dir that semrep did not make (docs/cli.md)\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, options, 2, 2, usage, comm, &args, &done);
    if (status || done) return status;
    const sr_stage *stage = sr_stage_find(args.positional[0]);
    if (!stage) {
        sr_comm_error(comm, SR_EXIT_USAGE, "unknown stage '%s'", args.positional[0]);
        if (comm->rank == 0) fputs(usage, stderr);
        return SR_EXIT_USAGE;
    }
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[1], &args, comm, &conf))) return status;
    if ((status = claim_output(&conf, &args, comm))) return sr_conf_free(&conf), status;
    status = stage->run ? (stage->run(&conf, comm) ? SR_EXIT_FAILED : SR_EXIT_OK)
                        : sr_comm_error(comm, SR_EXIT_FAILED, "stage %s is not built yet", stage->name);
    sr_conf_free(&conf);
    return status;
}
