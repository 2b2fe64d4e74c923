#define _POSIX_C_SOURCE 200809L /* open_memstream */
/* The escaping helpers (io/text_escape.h) against strings escaped by hand:
 * each hostile character of each format, and plain text left as it is. */
#include <stdio.h>
#include <stdlib.h>

#include "io/text_escape.h"
#include "test_util.h"

/* What escape writes for `in` equals `want`. */
static void expect(void (*escape)(FILE *, const char *), const char *in, const char *want)
{
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    escape(f, in);
    CU_ASSERT_EQUAL_FATAL(fclose(f), 0);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
}

static void html_text(void)
{
    expect(sr_html_text, "plain text 1.5", "plain text 1.5");
    expect(sr_html_text, "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(sr_html_text, "a & b &amp; c", "a &amp; b &amp;amp; c");
    expect(sr_html_text, "it's \"quoted\"", "it's \"quoted\""); /* harmless in element content */
    expect(sr_html_text, "", "");
}

static void html_attr(void)
{
    expect(sr_html_attr, "img-001.png", "img-001.png");
    expect(sr_html_attr, "x\" onmouseover=\"alert(1)", "x&quot; onmouseover=&quot;alert(1)");
    expect(sr_html_attr, "x' onerror='alert(1)", "x&#39; onerror=&#39;alert(1)");
    expect(sr_html_attr, "<b>&amp;</b>", "&lt;b&gt;&amp;amp;&lt;/b&gt;");
    expect(sr_html_attr, "\"'<>&", "&quot;&#39;&lt;&gt;&amp;");
}

static void csv_field(void)
{
    expect(sr_csv_field, "0.125", "0.125");
    expect(sr_csv_field, "sigma 51 K 10", "sigma 51 K 10");
    expect(sr_csv_field, "", "");
    expect(sr_csv_field, "a,b", "\"a,b\"");
    expect(sr_csv_field, "say \"hi\"", "\"say \"\"hi\"\"\"");
    expect(sr_csv_field, "\"", "\"\"\"\"");
    expect(sr_csv_field, "two\nlines", "\"two\nlines\"");
    expect(sr_csv_field, "cr\rhere", "\"cr\rhere\"");
    expect(sr_csv_field, "it's <fine> & ok", "it's <fine> & ok"); /* nothing for CSV to quote */
}

static void gnuplot_string(void)
{
    expect(sr_gnuplot_string, "enc1", "'enc1'");
    expect(sr_gnuplot_string, "", "''");
    expect(sr_gnuplot_string, "it's", "'it''s'");
    expect(sr_gnuplot_string, "x'; system('touch M') #", "'x''; system(''touch M'') #'");
    /* double quotes, backquotes, macros and backslashes are plain text in single quotes */
    expect(sr_gnuplot_string, "x\"; system(\"touch M\") `touch M` @m \\", "'x\"; system(\"touch M\") `touch M` @m \\'");
    /* a newline would end the command and start another */
    expect(sr_gnuplot_string, "a\nsystem('touch M')\r\t\x7f", "'a system(''touch M'')   '");
}

int main(void)
{
    const sr_test tests[] = {{"HTML element content", html_text},
                             {"HTML attribute values", html_attr},
                             {"CSV fields, RFC 4180", csv_field},
                             {"gnuplot string constants", gnuplot_string},
                             {NULL, NULL}};
    return sr_test_run("text_escape", tests);
}
