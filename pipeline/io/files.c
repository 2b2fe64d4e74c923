#define _GNU_SOURCE
#include "core/check.h"
#include "io/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

sr_file_id sr_file_id_of(const struct stat *st)
{
    return (sr_file_id){.size = st->st_size, .mtime_s = st->st_mtim.tv_sec, .mtime_ns = st->st_mtim.tv_nsec,
                        .ctime_s = st->st_ctim.tv_sec, .ctime_ns = st->st_ctim.tv_nsec,
                        .inode = (long long)st->st_ino};
}

int sr_file_stamp(const char *path, sr_file_id *id)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    *id = sr_file_id_of(&st);
    return 0;
}

static const char *kind_of(mode_t mode)
{
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISDIR(mode)) return "a folder";
    return "not a regular file";
}

static int refuse_kind(const char *path, const char *what, mode_t mode, char *err, size_t errlen)
{
    return sr_report(err, errlen, "%s (%s) is %s; semrep reads only regular files: give the path of a file", path, what,
                     kind_of(mode));
}

int sr_check_regular(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sr_report(err, errlen, "cannot open %s (%s): %s; check the path", path, what, strerror(errno));
    if (S_ISREG(st.st_mode)) return 0;
    return refuse_kind(path, what, st.st_mode, err, errlen);
}

int sr_open_regular(const char *path, const char *what, char *err, size_t errlen)
{
    /* stat first: opening a socket fails and opening a device may act on it */
    if (sr_check_regular(path, what, err, errlen)) return -1;
    /* it may have been replaced since: O_NONBLOCK keeps a FIFO from blocking the open */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return sr_report(err, errlen, "cannot open %s (%s): %s; check the path", path, what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int failed = errno;
        close(fd);
        return sr_report(err, errlen, "cannot read %s (%s): %s", path, what, strerror(failed));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return refuse_kind(path, what, st.st_mode, err, errlen);
    }
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        const int failed = errno;
        close(fd);
        return sr_report(err, errlen, "cannot read %s (%s): %s", path, what, strerror(failed));
    }
    return fd;
}

int sr_remove_tree(const char *path) { return sr_remove_path(path); }
