/* The registry of temporary files and folders (core/check.h): whatever ends
 * the process (a fatal error, exit, SIGTERM) removes the temporaries still
 * registered and nothing else; a committed one is forgotten. And the words
 * for a write that failed on a full disk. Each ending runs in a child. */
#define _DEFAULT_SOURCE /* symlink */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/check.h"
#include "test_util.h"

enum { END_FAIL, END_EXIT, END_SIGTERM, END_CALLOC };

static char dir[64];
static char file[128], folder[128], inner[160], kept[128], outside[128];

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("x\n", f);
    fclose(f);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void new_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/semrep_temp_XXXXXX");
    sr_test_temp_dir(dir);
}

/* The child registers a file, a folder with a file inside and one more file
 * that it then commits (forgets), then ends as told. */
static int run_child(int how)
{
    new_dir();
    snprintf(file, sizeof file, "%s/a.nc.tmp.1", dir);
    snprintf(folder, sizeof folder, "%s/report.tmp.1", dir);
    snprintf(inner, sizeof inner, "%s/index.html", folder);
    snprintf(kept, sizeof kept, "%s/b.nc.tmp.1", dir);
    snprintf(outside, sizeof outside, "%s/mine.txt", dir);
    touch(outside);
    fflush(NULL);
    const pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        sr_temp_add(file);
        touch(file);
        sr_temp_add(folder);
        sr_temp_add(folder); /* twice: held once */
        mkdir(folder, 0777);
        touch(inner);
        sr_temp_add(kept);
        touch(kept);
        sr_temp_forget(kept);
        if (how == END_FAIL) SR_FAIL("a test failure on purpose");
        if (how == END_SIGTERM) raise(SIGTERM);
        if (how == END_CALLOC) free(SR_CALLOC(SIZE_MAX / 2, 4, "an overflowing count")); /* dies */
        exit(0);
    }
    int status = 0;
    CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
    return status;
}

static void check_left(void)
{
    CU_ASSERT(!exists(file));
    CU_ASSERT(!exists(folder));
    CU_ASSERT(exists(kept));
    CU_ASSERT(exists(outside));
    sr_test_remove_tree(dir);
}

static void test_fatal_error_removes(void)
{
    const int status = run_child(END_FAIL);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    check_left();
}

static void test_exit_removes(void)
{
    const int status = run_child(END_EXIT);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_left();
}

static void test_sigterm_removes(void)
{
    const int status = run_child(END_SIGTERM);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM); /* still ended by the signal */
    check_left();
}

static void test_failed_alloc_removes(void)
{
    const int status = run_child(END_CALLOC);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    check_left();
}

/* The loaders' allocators: NULL and a message, never the end of the run. */
static void test_try_alloc(void)
{
    char err[256] = "";
    CU_ASSERT(sr_try_calloc(SIZE_MAX / 2, 4, "the labels", err, sizeof err) == NULL);
    char want[256];
    snprintf(want, sizeof want, "out of memory allocating %zu x 4 bytes for the labels", SIZE_MAX / 2);
    CU_ASSERT_STRING_EQUAL(err, want);
    int *p = sr_try_calloc(0, sizeof(int), "nothing", err, sizeof err); /* 0 bytes: still a block */
    CU_ASSERT_FATAL(p != NULL);
    p = sr_try_realloc(p, 3, sizeof(int), "three", err, sizeof err);
    CU_ASSERT_FATAL(p != NULL);
    p[0] = 7, p[2] = 9;
    CU_ASSERT(sr_try_realloc(p, SIZE_MAX, 2, "too many", err, sizeof err) == NULL); /* p kept */
    int *q = SR_REALLOC(p, 1000, sizeof(int), "more");
    CU_ASSERT(q[0] == 7 && q[2] == 9);
    int *z = SR_CALLOC(1000, sizeof(int), "zeros");
    CU_ASSERT(z[0] == 0 && z[999] == 0);
    char *copy = SR_STRDUP("semrep", "a copy");
    CU_ASSERT_STRING_EQUAL(copy, "semrep");
    free(q), free(z), free(copy);
}

static void test_remove_now(void)
{
    new_dir();
    snprintf(outside, sizeof outside, "%s/mine.txt", dir);
    touch(outside);
    snprintf(folder, sizeof folder, "%s/report.tmp.2", dir);
    snprintf(inner, sizeof inner, "%s/index.html", folder);
    sr_temp_add(folder);
    mkdir(folder, 0777);
    touch(inner);
    /* more entries than one read of the folder returns, and a link that
     * must go without what it points to */
    char sub[192], name[320];
    snprintf(sub, sizeof sub, "%s/images", folder);
    mkdir(sub, 0777);
    for (int i = 0; i < 400; i++) {
        snprintf(name, sizeof name, "%s/a-rather-long-thumbnail-name-to-fill-the-buffer-%04d.png", sub, i);
        touch(name);
    }
    snprintf(name, sizeof name, "%s/link", sub);
    CU_ASSERT_FATAL(symlink(outside, name) == 0);
    sr_temp_remove(folder);
    CU_ASSERT(!exists(folder));
    CU_ASSERT(exists(outside));
    sr_test_remove_tree(dir);
}

static void test_disk_full_words(void)
{
    char out[256];
    CU_ASSERT_STRING_EQUAL(sr_write_reason(ENOSPC, "/runs/a/phi.nc.tmp.7", "check the disk", out, sizeof out),
                           "the disk is full (/runs/a): free space or choose another output_dir");
    CU_ASSERT_STRING_EQUAL(sr_write_reason(EDQUOT, "/x.png", NULL, out, sizeof out),
                           "the disk is full (/): free space or choose another output_dir");
    CU_ASSERT_STRING_EQUAL(sr_write_reason(ENOSPC, "x.png", NULL, out, sizeof out),
                           "the disk is full (.): free space or choose another output_dir");
    char want[128];
    snprintf(want, sizeof want, "%s; check the permissions", strerror(EACCES));
    CU_ASSERT_STRING_EQUAL(sr_write_reason(EACCES, "/runs/a", "check the permissions", out, sizeof out), want);
    CU_ASSERT_STRING_EQUAL(sr_write_reason(EIO, "/runs/a", NULL, out, sizeof out), strerror(EIO));
}

int main(void)
{
    static const sr_test tests[] = {
        {"a fatal error removes the registered temporaries, not the committed one", test_fatal_error_removes},
        {"exit removes them", test_exit_removes},
        {"SIGTERM removes them and still ends the process", test_sigterm_removes},
        {"a failed SR_CALLOC ends the run the same way", test_failed_alloc_removes},
        {"sr_try_calloc and sr_try_realloc return NULL with a message", test_try_alloc},
        {"sr_temp_remove removes a folder, its files and links now, not what links point to", test_remove_now},
        {"a full disk is named with its folder and what to do", test_disk_full_words},
        {NULL, NULL},
    };
    return sr_test_run("temporaries", tests);
}
