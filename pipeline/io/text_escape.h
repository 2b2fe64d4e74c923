/* Escaping for the text formats semrep writes and other programs read: HTML,
 * CSV and gnuplot scripts. Every string that a user or a file can set (class
 * and file names, attributes read back from files) goes through one of these
 * before it reaches such a file, so that it stays data: no markup, no event
 * handler, no extra CSV column, no gnuplot command. */
#ifndef SEMREP_IO_TEXT_ESCAPE_H
#define SEMREP_IO_TEXT_ESCAPE_H

#include <stdio.h>

/* HTML element content: &, < and > as entities. */
void sr_html_text(FILE *f, const char *s);
/* An HTML attribute value (in double or single quotes): &, <, >, " and ' as entities. */
void sr_html_attr(FILE *f, const char *s);
/* One CSV field, RFC 4180: in double quotes, with each " doubled, when it holds
 * a comma, a double quote, CR or LF; as it is otherwise. */
void sr_csv_field(FILE *f, const char *s);
/* A gnuplot string constant, quotes included: single-quoted (no backquote or
 * macro substitution happens there) with each ' doubled, and control
 * characters, which would end the command, as spaces. */
void sr_gnuplot_string(FILE *f, const char *s);

#endif
