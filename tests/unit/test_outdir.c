/* The ownership record of an output folder (io/outdir.h): concurrent
 * writers lose no entry, only owned files are ever removed, a folder is
 * replaced file by file around files semrep did not write, and a folder is
 * claimed only when it is new, semrep's, or adopted. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/outdir.h"
#include "test_util.h"

static char root[] = "/tmp/semrep_outdir_XXXXXX";

static void put(const char *dir, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *dir, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return access(path, F_OK) == 0;
}

/* The record's lines, counted independently of the module. */
static int record_lines(const char *dir)
{
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/" SR_OUTDIR_RECORD, dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (fgets(line, sizeof line, f)) n++;
    fclose(f);
    return n;
}

static void fresh(char *dir, size_t len, const char *name)
{
    snprintf(dir, len, "%s/%s", root, name);
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
}

/* 8 processes register 40 names each, one at a time, as SLURM array tasks
 * do: without the lock, or with a record rewritten in place, entries go missing. */
static void test_concurrent_writers(void)
{
    char dir[1024];
    fresh(dir, sizeof dir, "concurrent");
    enum { WRITERS = 8, EACH = 40 };
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        if ((pids[w] = fork()) == 0) {
            for (int i = 0; i < EACH; i++) {
                char name[32];
                snprintf(name, sizeof name, "writer%d/file%02d", w, i);
                sr_outdir_register(dir, (const char *[]){name}, 1);
            }
            _exit(0);
        }
        CU_ASSERT_FATAL(pids[w] > 0);
    }
    for (int w = 0; w < WRITERS; w++) {
        int status;
        waitpid(pids[w], &status, 0);
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CU_ASSERT_EQUAL(record_lines(dir), WRITERS * EACH);
    for (int w = 0; w < WRITERS; w++)
        for (int i = 0; i < EACH; i++) {
            char name[32];
            snprintf(name, sizeof name, "writer%d/file%02d", w, i);
            CU_ASSERT(sr_outdir_owns(dir, name));
        }
    /* registering again adds nothing */
    sr_outdir_register(dir, (const char *[]){"writer0/file00"}, 1);
    CU_ASSERT_EQUAL(record_lines(dir), WRITERS * EACH);
}

static void test_prune_owned_only(void)
{
    char dir[1024], sub[1100];
    fresh(dir, sizeof dir, "prune");
    snprintf(sub, sizeof sub, "%s/p", dir);
    CU_ASSERT_FATAL(mkdir(sub, 0755) == 0);
    put(dir, "p/mine-0", "0"), put(dir, "p/mine-1", "1"), put(dir, "p/theirs", "t"), put(dir, "q", "q");
    sr_outdir_register(dir, (const char *[]){"p/mine-0", "p/mine-1", "q"}, 3);
    CU_ASSERT_EQUAL(sr_outdir_prune(dir, "p/", (const char *[]){"p/mine-0"}, 1), 1);
    CU_ASSERT(exists(dir, "p/mine-0") && !exists(dir, "p/mine-1") && exists(dir, "p/theirs") && exists(dir, "q"));
    CU_ASSERT(!sr_outdir_owns(dir, "p/mine-1") && sr_outdir_owns(dir, "p/mine-0") && sr_outdir_owns(dir, "q"));
    char err[512] = "";
    CU_ASSERT(sr_outdir_check(dir, "p/mine-0", err, sizeof err) == 0);
    CU_ASSERT(sr_outdir_check(dir, "p/absent", err, sizeof err) == 0);
    CU_ASSERT(sr_outdir_check(dir, "p/theirs", err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "prune/p/theirs is there and semrep did not write it") != NULL);
}

static void test_replace(void)
{
    char dir[1024], from[1100], path[1200];
    fresh(dir, sizeof dir, "replace");
    snprintf(from, sizeof from, "%s/report.tmp", dir);
    snprintf(path, sizeof path, "%s/report", dir);
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0 && mkdir(from, 0755) == 0);
    snprintf(path, sizeof path, "%s/plots", from);
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
    put(dir, "report/index.html", "old"), put(dir, "report/old.png", "old"), put(dir, "report/thesis.tex", "mine");
    sr_outdir_register(dir, (const char *[]){"report/index.html", "report/old.png"}, 2);
    put(from, "index.html", "new"), put(from, "plots/a.png", "new");
    char err[512] = "";
    CU_ASSERT_FATAL(sr_outdir_replace(dir, "report", from, err, sizeof err) == 0);
    CU_ASSERT(exists(dir, "report/index.html") && exists(dir, "report/plots/a.png") && exists(dir, "report/thesis.tex"));
    CU_ASSERT(!exists(dir, "report/old.png") && !sr_outdir_owns(dir, "report/old.png"));
    CU_ASSERT(sr_outdir_owns(dir, "report/plots/a.png") && !sr_outdir_owns(dir, "report/thesis.tex"));
    /* a new report that would overwrite thesis.tex is refused, and nothing moves */
    put(from, "thesis.tex", "generated"), put(from, "index.html", "newer");
    CU_ASSERT(sr_outdir_replace(dir, "report", from, err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "report/thesis.tex is there and semrep did not write it") != NULL);
    CU_ASSERT(exists(from, "index.html") && exists(from, "thesis.tex"));
}

static void test_claim(void)
{
    char dir[1024], err[1024] = "";
    /* a new folder, made */
    snprintf(dir, sizeof dir, "%s/claim/new", root);
    CU_ASSERT(sr_outdir_claim(dir, false, NULL, 0, err, sizeof err) == 0);
    CU_ASSERT(record_lines(dir) == 0);
    /* someone else's: refused and left as it was; adopted with the flag, owning none of its files */
    fresh(dir, sizeof dir, "theirs");
    put(dir, "notes.txt", "n");
    CU_ASSERT(sr_outdir_claim(dir, false, NULL, 0, err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "theirs holds files semrep did not write (notes.txt, ...)") != NULL);
    CU_ASSERT(!exists(dir, SR_OUTDIR_RECORD) && !exists(dir, SR_OUTDIR_RECORD ".lock"));
    CU_ASSERT(sr_outdir_claim(dir, true, NULL, 0, err, sizeof err) == 0);
    CU_ASSERT(record_lines(dir) == 0 && exists(dir, "notes.txt"));
    /* an older semrep folder: its skip record and report page adopted, nothing else */
    fresh(dir, sizeof dir, "older");
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/report", dir);
    CU_ASSERT_FATAL(mkdir(sub, 0755) == 0);
    put(dir, ".semrep-done-stats", "0123456789abcdef\n"), put(dir, "report/index.html", "page");
    put(dir, "report/thesis.tex", "mine"), put(dir, "other.nc", "not NetCDF");
    CU_ASSERT(sr_outdir_claim(dir, false, NULL, 0, err, sizeof err) == 0);
    CU_ASSERT(sr_outdir_owns(dir, ".semrep-done-stats") && sr_outdir_owns(dir, "report/index.html"));
    CU_ASSERT(!sr_outdir_owns(dir, "report/thesis.tex") && !sr_outdir_owns(dir, "other.nc"));
    CU_ASSERT_EQUAL(record_lines(dir), 2);
    /* inside a data folder, even through a path not made yet: refused, nothing made */
    char data[1100];
    fresh(data, sizeof data, "data");
    snprintf(dir, sizeof dir, "%s/data/../data/out/deeper", root);
    CU_ASSERT(sr_outdir_claim(dir, true, (const char *const[]){NULL, data}, 2, err, sizeof err) == -1);
    CU_ASSERT(strstr(err, "is inside the data folder") != NULL);
    CU_ASSERT(!exists(data, "out"));
    CU_ASSERT(sr_outdir_claim(data, true, (const char *const[]){data}, 1, err, sizeof err) == -1);
}

int main(void)
{
    sr_test_temp_dir(root);
    const sr_test tests[] = {
        {"concurrent writers lose no entry", test_concurrent_writers},
        {"prune removes owned files only", test_prune_owned_only},
        {"a folder replaced around files semrep did not write", test_replace},
        {"claiming: new, foreign, adopted, older, inside the data", test_claim},
        {NULL, NULL},
    };
    const int failed = sr_test_run("outdir", tests);
    sr_test_remove_tree(root);
    return failed;
}
