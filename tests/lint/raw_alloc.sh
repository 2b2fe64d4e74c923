#!/usr/bin/env bash
# No raw allocation outside pipeline/core/ (issue 18): malloc, calloc,
# realloc, strdup and strndup are called only through core/check.h's
# SR_MALLOC, SR_CALLOC, SR_REALLOC and SR_STRDUP, which name what failed and
# end the run through the fatal-error hook, or through sr_try_calloc and
# sr_try_realloc, which loaders of user input use to return their message.
# Comments, string and character literals are skipped.
#
# Scanned: the C sources and headers of pipeline/ (less core/, which holds
# the checked allocators themselves and the backends' raw memory) and
# stages/. tests/ is not scanned: test code may allocate raw, since a NULL
# there crashes the test, which then fails.
#
# raw_alloc.sh [ROOT]        checks the tree at ROOT (default: this checkout)
# raw_alloc.sh --self-test   shows that the check fails on a planted malloc
#                            and passes over comments and strings
set -euo pipefail

scan() { # $1: the tree's root; prints each raw call as FILE:LINE: TEXT
    (cd "$1" && find pipeline stages -type f \( -name '*.c' -o -name '*.h' \) -not -path 'pipeline/core/*' -print0 |
        sort -z | xargs -0 -r perl -e '
            for my $file (@ARGV) {
                open(my $fh, "<", $file) or die "raw_alloc.sh: cannot read $file: $!\n";
                local $/; my $text = <$fh>; close $fh;
                # blank comments and literals, keeping their newlines so that line numbers hold
                $text =~ s{(/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}
                          {my $m = $1; $m =~ s/[^\n]/ /g; $m}gse;
                my @lines = split /\n/, $text, -1;
                for my $i (0 .. $#lines) {
                    print "$file:", $i + 1, ": $lines[$i]\n"
                        if $lines[$i] =~ /(?<![\w.>])(?:malloc|calloc|realloc|strdup|strndup)\s*\(/;
                }
            }' "$@")
}

if [ "${1:-}" = "--self-test" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/pipeline/core" "$tmp/stages"
    cat >"$tmp/stages/planted.c" <<'C'
/* a comment that says malloc(n) and
 * calloc(1, n) over two lines */
// realloc(p, n) in a line comment
static const char *text = "strdup(s) in a string", c = '(';
void *fine(void) { return SR_MALLOC(4, "x"); }
void *planted(void) { return malloc(4); }
C
    echo 'void *p(void) { return malloc(4); } /* core/ may */' >"$tmp/pipeline/core/ok.c"
    found=$(scan "$tmp")
    if [ "$found" != "stages/planted.c:6: void *planted(void) { return malloc(4); }" ]; then
        echo "raw_alloc.sh --self-test: error: expected only the planted malloc at stages/planted.c:6, found:" >&2
        echo "${found:-(nothing)}" >&2
        exit 1
    fi
    if "$0" "$tmp" >/dev/null 2>&1; then
        echo "raw_alloc.sh --self-test: error: the check passed a tree with a raw malloc" >&2
        exit 1
    fi
    echo "raw_alloc.sh --self-test: the planted malloc is found, comments and strings are skipped"
    exit 0
fi

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
found=$(scan "$root")
if [ -n "$found" ]; then
    echo "$found" >&2
    echo "raw_alloc.sh: error: raw allocation outside pipeline/core/ (above): use SR_MALLOC, SR_CALLOC, SR_REALLOC or SR_STRDUP (core/check.h), or sr_try_calloc/sr_try_realloc in a loader that returns its message" >&2
    exit 1
fi
echo "raw_alloc.sh: no raw allocation outside pipeline/core/"
