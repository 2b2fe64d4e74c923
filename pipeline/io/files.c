#define _GNU_SOURCE
#include "core/check.h"
#include "io/files.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int sr_make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return sr_report(err, errlen, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        const char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            char why[4200];
            return sr_report(err, errlen, "cannot make the folder %s: %s", buf,
                             sr_write_reason(errno, buf, "check the permissions", why, sizeof why));
        }
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sr_report(err, errlen, "%s exists and is not a folder", path);
    return 0;
}

int sr_file_stamp(const char *path, long long *size, long long *mtime)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    *size = (long long)st.st_size;
    *mtime = (long long)st.st_mtime;
    return 0;
}

int sr_remove_tree(const char *path) { return sr_remove_path(path); }
