/* Escaping for HTML, CSV and gnuplot: text_escape.h. */
#include "io/text_escape.h"

#include <string.h>

static void html(FILE *f, const char *s, int quotes)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs(quotes ? "&quot;" : "\"", f); break;
        case '\'': fputs(quotes ? "&#39;" : "'", f); break;
        default: fputc(*p, f);
        }
    }
}

void sr_html_text(FILE *f, const char *s) { html(f, s, 0); }

void sr_html_attr(FILE *f, const char *s) { html(f, s, 1); }

void sr_csv_field(FILE *f, const char *s)
{
    if (!s[strcspn(s, ",\"\r\n")]) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

void sr_gnuplot_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (const char *p = s; *p; p++) {
        const unsigned char c = (unsigned char)*p;
        if (c == '\'') fputs("''", f);
        else fputc(c < 0x20 || c == 0x7f ? ' ' : c, f);
    }
    fputc('\'', f);
}
