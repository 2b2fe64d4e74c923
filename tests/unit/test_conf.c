#define _GNU_SOURCE /* mkstemp */
/* The conf: defaults, the embedded default conf, --set, and every kind of
 * bad input refused with the key's name (and the line, from a file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/conf.h"
#include "stages/model.h"
#include "test_util.h"

#define ROOT SEMREP_FIXTURES "/../.."

static char err[1024];

static int load_text(const char *text, int nsets, char *const *sets, semrep_conf *conf)
{
    char path[] = "/tmp/semrep_test_conf_XXXXXX";
    const int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    const int rc = sr_conf_load(conf, path, nsets, sets, err, sizeof err);
    remove(path);
    return rc;
}

/* The conf is refused and the message holds every fragment. */
static void expect_refused(const char *text, int nsets, char *const *sets, const char *a, const char *b)
{
    semrep_conf conf;
    err[0] = '\0';
    CU_ASSERT_EQUAL(load_text(text, nsets, sets, &conf), -1);
    const int has = strstr(err, a) && (!b || strstr(err, b));
    if (!has) printf("\n    unexpected message: %s", err);
    CU_ASSERT(has);
    CU_ASSERT_PTR_NULL(strchr(err, '\n')); /* one line */
}

static void test_defaults(void)
{
    semrep_conf conf;
    CU_ASSERT_FATAL(sr_conf_load(&conf, NULL, 0, NULL, err, sizeof err) == 0);
    const sr_unet_shape s = sr_conf_shape(&conf), d = sr_unet_shape_default();
    CU_ASSERT_EQUAL(s.levels, d.levels);
    CU_ASSERT(!memcmp(s.kernels, d.kernels, sizeof s.kernels));
    CU_ASSERT(!memcmp(s.dec_convs, d.dec_convs, sizeof s.dec_convs));
    CU_ASSERT_EQUAL(conf.phi.draws, 20);
    CU_ASSERT_EQUAL(conf.phi.nsigmas, 4);
    CU_ASSERT_DOUBLE_EQUAL(conf.phi.sigmas[2], 0.2, 0);
    CU_ASSERT_STRING_EQUAL(conf.dataset.kind, "idx");
    CU_ASSERT_PTR_NOT_NULL(strstr(conf.train.dataset.images, "train-images"));
    CU_ASSERT_DOUBLE_EQUAL(conf.train.lr, 1e-3, 0);
    CU_ASSERT_EQUAL(conf.seed, 1);
    CU_ASSERT_TRUE(conf.phi.block_means);
    sr_conf_free(&conf);
}

static void test_shipped_confs(void)
{
    const char *confs[] = {ROOT "/conf/fashion-mnist.conf", ROOT "/conf/fashion-mnist-full.conf",
                           ROOT "/conf/paper-imagenet64.conf", ROOT "/conf/tiny-test.conf"};
    for (size_t i = 0; i < sizeof confs / sizeof *confs; i++) {
        semrep_conf conf;
        const int rc = sr_conf_load(&conf, confs[i], 0, NULL, err, sizeof err);
        if (rc) printf("\n    %s", err);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) continue;
        /* the paper's shape, and the full run's 15 sigmas and 20 draws */
        if (strstr(confs[i], "paper")) CU_ASSERT_EQUAL(conf.model.kernels[3], 512);
        if (strstr(confs[i], "full")) CU_ASSERT(conf.phi.nsigmas == 15 && conf.phi.draws == 20 && conf.dataset.limit == 0);
        sr_conf_free(&conf);
    }
}

static void test_set_overrides(void)
{
    char *sets[] = {"phi.sigmas=[0.0, 0.2]", "dataset.kind=\"png\"", "dataset.path=\"/data/x\"",
                    "train.lr=5e-4", "phi.block_means=false", "model.kernels=[16,32,64]",
                    "model.enc_convs=[1,1]", "model.dec_convs=[1,1]", "seed=7"};
    semrep_conf conf;
    const int rc = load_text("seed = 3;\nphi = { draws = 5; };\n", 9, sets, &conf);
    if (rc) printf("\n    %s", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(conf.phi.nsigmas, 2);
    CU_ASSERT_DOUBLE_EQUAL(conf.phi.sigmas[1], 0.2, 0);
    CU_ASSERT_EQUAL(conf.phi.draws, 5);
    CU_ASSERT_STRING_EQUAL(conf.dataset.kind, "png");
    CU_ASSERT_DOUBLE_EQUAL(conf.train.lr, 5e-4, 0);
    CU_ASSERT_FALSE(conf.phi.block_means);
    CU_ASSERT_EQUAL(conf.model.nkernels, 3);
    CU_ASSERT_EQUAL(conf.seed, 7); /* --set wins over the file */
    /* The effective text holds every key and reloads to the same values. */
    semrep_conf again;
    CU_ASSERT_FATAL(load_text(conf.text, 0, NULL, &again) == 0);
    CU_ASSERT(!memcmp(again.phi.sigmas, conf.phi.sigmas, sizeof conf.phi.sigmas));
    CU_ASSERT_STRING_EQUAL(again.dataset.path, "/data/x");
    CU_ASSERT_EQUAL(again.seed, 7);
    CU_ASSERT_EQUAL(again.model.nkernels, 3);
    CU_ASSERT_DOUBLE_EQUAL(again.train.lr, 5e-4, 0);
    sr_conf_free(&again);
    sr_conf_free(&conf);
}

static void test_refusals(void)
{
    expect_refused("phi = { sigmass = [0.1]; };\n", 0, NULL, "line 1: unknown key phi.sigmass", "did you mean phi.sigmas?");
    expect_refused("phii = { draws = 3; };\n", 0, NULL, "unknown group phii", NULL);
    expect_refused("seed = 1;\nphi = { draws = \"many\"; };\n", 0, NULL, "line 2: phi.draws must be an integer", NULL);
    expect_refused("phi = { draws = 2.5; };\n", 0, NULL, "phi.draws must be an integer", NULL);
    expect_refused("model = { kernels = [32, -64, 128]; enc_convs = [2, 2]; dec_convs = [2, 2]; };\n", 0, NULL,
                   "model.kernels = -64 is out of range", NULL);
    expect_refused("model = { in_channels = -1; };\n", 0, NULL, "model.in_channels = -1 is out of range", NULL);
    expect_refused("model = { norm = \"instance\"; };\n", 0, NULL, "model.norm = \"instance\" is not one of layer|batch", NULL);
    expect_refused("model = { kernels = [32, 64]; };\n", 0, NULL, "model.enc_convs has 3 entries", "1 encoder blocks");
    expect_refused("dataset = { channels = 3; };\n", 0, NULL, "dataset.channels = 3 but model.in_channels = 1", NULL);
    expect_refused("dataset = { size = 28; };\n", 0, NULL, "dataset.size", "multiples of 8");
    expect_refused("train = { sigma_min = 0.5; sigma_max = 0.1; };\n", 0, NULL, "train.sigma_min = 0.5 is above", NULL);
    expect_refused("seed = 1\nphi = {\n", 0, NULL, "line", NULL); /* a syntax error names its line */
    char *typo[] = {"phi.sigma=[0.1]"};
    expect_refused("", 1, typo, "--set: unknown key phi.sigma", "did you mean phi.sigmas?");
    char *bad_value[] = {"phi.sigmas=[0.1"};
    expect_refused("", 1, bad_value, "--set phi.sigmas: [0.1 is not a libconfig value", NULL);
    char *wrong_type[] = {"dataset.kind=png"};
    expect_refused("", 1, wrong_type, "--set dataset.kind: png is not a libconfig value", NULL);
    char *no_eq[] = {"phi.draws"};
    expect_refused("", 1, no_eq, "write --set KEY=VALUE", NULL);
    semrep_conf conf;
    CU_ASSERT_EQUAL(sr_conf_load(&conf, "/nonexistent/x.conf", 0, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read the conf /nonexistent/x.conf"));
}

/* Integers past 2^31 are read as written (libconfig 1.5 wraps them without
 * an L suffix): the wide counts keep them, the seed's whole range works,
 * and what does not fit is refused by key, never wrapped. */
static void test_wide_integers(void)
{
    semrep_conf conf;
    CU_ASSERT_FATAL(load_text("seed = 4294967295;\ndataset = { limit = 4294967360; stride = 3000000000; };\n"
                              "train = { run_steps = 5000000000; dataset = { max_pixels = 0x100000000; }; };\n"
                              "phi = { run_chunks = 2147483648; sigmas = [0.0, 1e-1]; }; # 4294967297\n"
                              "/* 99999999999999999999 */ output_dir = \"runs/12345678901\";\n",
                              0, NULL, &conf) == 0);
    CU_ASSERT_EQUAL(conf.seed, 4294967295L);
    CU_ASSERT_EQUAL(conf.dataset.limit, 4294967360L);
    CU_ASSERT_EQUAL(conf.dataset.stride, 3000000000L);
    CU_ASSERT_EQUAL(conf.train.run_steps, 5000000000L);
    CU_ASSERT_EQUAL(conf.train.dataset.max_pixels, 4294967296L);
    CU_ASSERT_EQUAL(conf.phi.run_chunks, 2147483648L);
    CU_ASSERT_STRING_EQUAL(conf.output_dir, "runs/12345678901");
    /* the effective conf reloads to the same numbers */
    semrep_conf again;
    CU_ASSERT_FATAL(load_text(conf.text, 0, NULL, &again) == 0);
    CU_ASSERT_EQUAL(again.dataset.limit, 4294967360L);
    CU_ASSERT_EQUAL(again.seed, 4294967295L);
    sr_conf_free(&again);
    sr_conf_free(&conf);
    char *sets[] = {"seed=4294967295", "train.checkpoint_every=8589934592", "cluster.exact_max=3000000000"};
    CU_ASSERT_FATAL(load_text("", 3, sets, &conf) == 0);
    CU_ASSERT_EQUAL(conf.seed, 4294967295L);
    CU_ASSERT_EQUAL(conf.train.checkpoint_every, 8589934592L);
    CU_ASSERT_EQUAL(conf.cluster.exact_max, 3000000000L);
    sr_conf_free(&conf);
    CU_ASSERT_FATAL(load_text("seed = 0;\n", 0, NULL, &conf) == 0);
    CU_ASSERT_EQUAL(conf.seed, 0);
    sr_conf_free(&conf);
    expect_refused("seed = 4294967296;\n", 0, NULL, "line 1: seed = 4294967296 is out of range [0, 4294967295]", NULL);
    expect_refused("\nseed = 4294967297;\n", 0, NULL, "line 2: seed = 4294967297 is out of range", NULL);
    expect_refused("phi = { draws = 4294967297; };\n", 0, NULL, "phi.draws = 4294967297 is out of range", NULL);
    expect_refused("dataset = { limit = 99999999999999999999; };\n", 0, NULL,
                   "line 1: the integer 99999999999999999999 is out of range", NULL);
    expect_refused("reconstruct = { targets = [1, 4294967296]; };\n", 0, NULL,
                   "line 1: targets: the list entry 4294967296 is out of range", NULL);
    char *over[] = {"seed=4294967296"};
    expect_refused("", 1, over, "seed = 4294967296 is out of range", NULL);
    char *huge[] = {"dataset.limit=99999999999999999999"};
    expect_refused("", 1, huge, "--set dataset.limit: 99999999999999999999 is out of range", NULL);
}

/* Absurd widths are refused before anything is allocated. */
static void test_absurd_width(void)
{
    char *sets[] = {"model.kernels=[8192, 8192, 8192, 8192]"};
    semrep_conf conf;
    CU_ASSERT_FATAL(load_text("", 1, sets, &conf) == 0);
    sr_unet net;
    sr_backend *cpu = sr_backend_cpu_new(0);
    const int rc = sr_model_plan(&conf, cpu, 64, false, &net, err, sizeof err);
    sr_backend_free(cpu);
    printf("\n    %s", err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "model.kernels = [8192, 8192, 8192, 8192] needs"));
    sr_conf_free(&conf);
}

/* Every key of the table is documented in docs/conf.md. */
static void test_every_key_documented(void)
{
    FILE *f = fopen(ROOT "/docs/conf.md", "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char doc[1 << 16];
    const size_t n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = '\0';
    fclose(f);
    for (int k = 0; k < sr_conf_key_count; k++) {
        char cell[160];
        snprintf(cell, sizeof cell, "| `%s` |", sr_conf_keys[k].path);
        if (!strstr(doc, cell)) printf("\n    not in docs/conf.md: %s", sr_conf_keys[k].path);
        CU_ASSERT_PTR_NOT_NULL(strstr(doc, cell));
    }
}

int main(void)
{
    const sr_test tests[] = {
        {"defaults are SPEC.md's", test_defaults},
        {"the shipped confs load", test_shipped_confs},
        {"--set overrides, and the effective conf reloads the same", test_set_overrides},
        {"bad confs are refused by key and line", test_refusals},
        {"an absurd width is refused before allocating", test_absurd_width},
        {"integers past 2^31 are kept or refused, never wrapped", test_wide_integers},
        {"every key is documented", test_every_key_documented},
        {NULL, NULL},
    };
    return sr_test_run("conf", tests);
}
