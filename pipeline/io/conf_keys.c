/* Every configuration key, in one table: docs/conf.md describes the same keys
 * (a test checks that every key here is documented there). */
#include <float.h>
#include <stddef.h>

#include "io/conf.h"

#define AT(member) offsetof(semrep_conf, member)
#define STR(path, member, choices, fallback, doc) \
    {path, SR_KEY_STRING, AT(member), 0, sizeof(((semrep_conf *)0)->member), 0, 0, choices, fallback, doc, false}
#define FILE_KEY(path, member, fallback, doc) \
    {path, SR_KEY_STRING, AT(member), 0, sizeof(((semrep_conf *)0)->member), 0, 0, NULL, fallback, doc, true}
#define NUM(path, type, member, lo, hi, fallback, doc) \
    {path, type, AT(member), 0, sizeof(((semrep_conf *)0)->member), lo, hi, NULL, fallback, doc, false}
#define LIST(path, type, member, count, lo, hi, fallback, doc)                                      \
    {path, type, AT(member), AT(count),                                                             \
     (int)(sizeof(((semrep_conf *)0)->member) / sizeof(((semrep_conf *)0)->member[0])), lo, hi,     \
     NULL, fallback, doc, false}
#define BIG 1e15

/* The keys of a data set, for `dataset` and `train.dataset`; the default
 * is Debian's Fashion-MNIST (test images for analysis, training images for
 * training). */
#define DATASET_KEYS(prefix, member, split)                                                          \
    STR(prefix "kind", member.kind, "idx|png|netcdf", "\"idx\"", "where the images come from"),     \
    FILE_KEY(prefix "images", member.images,                                                        \
        "\"/usr/share/datasets/fashion-mnist/" split "-images-idx3-ubyte.gz\"",                     \
        "idx: the IDX image file, gzipped or not"),                                                  \
    FILE_KEY(prefix "labels", member.labels,                                                        \
        "\"/usr/share/datasets/fashion-mnist/" split "-labels-idx1-ubyte.gz\"",                     \
        "idx: the IDX label file; \"\" for none"),                                                   \
    FILE_KEY(prefix "path", member.path, "\"\"", "png: the folder of PNG files (one sub-folder per class means labelled)"), \
    FILE_KEY(prefix "file", member.file, "\"\"", "netcdf: the file"),                               \
    STR(prefix "variable", member.variable, NULL, "\"images\"", "netcdf: the (image, channel, y, x) variable"), \
    STR(prefix "label_variable", member.label_variable, NULL, "\"\"", "netcdf: the (image) label variable; \"\" for none"), \
    NUM(prefix "size", SR_KEY_INT, member.size, 8, 4096, "32", "images are made size x size pixels"), \
    NUM(prefix "channels", SR_KEY_INT, member.channels, 1, 3, "1", "1 (grey) or 3 (RGB)"),           \
    NUM(prefix "limit", SR_KEY_INT, member.limit, 0, BIG, "0", "use at most `limit` images (after stride or index_file); 0 for all"), \
    NUM(prefix "stride", SR_KEY_INT, member.stride, 1, BIG, "1", "use every stride-th image (0, stride, 2 stride, ...)"), \
    FILE_KEY(prefix "index_file", member.index_file, "\"\"", "a text file of image indices to use, one per line; \"\" for all"), \
    FILE_KEY(prefix "classes", member.classes, "\"\"", "a text file of class names, one per line, for labels 0, 1, ...; \"\": folder names (png) or numbers"), \
    STR(prefix "on_bad_image", member.on_bad_image, "fail|skip", "\"fail\"", "an unreadable image stops the run, or is skipped and listed"), \
    NUM(prefix "max_pixels", SR_KEY_INT, member.max_pixels, 1, BIG, "100000000", "refuse images with more pixels than this"), \
    NUM(prefix "max_bad_share", SR_KEY_FLOAT, member.max_bad_share, 0, 1, "0.01", "with skip: fail when a larger share of the images is bad")

const sr_conf_key sr_conf_keys[] = {
    STR("output_dir", output_dir, NULL, "\"runs/default\"", "the run's output folder (relative: to the working directory)"),
    NUM("seed", SR_KEY_INT, seed, 0, 4294967295.0, "1", "the seed of every random stream"),
    STR("backend", backend, "auto|cpu|cuda", "\"auto\"", "auto: a GPU when one is visible (one that cannot start is an error), else the CPU"),
    NUM("threads", SR_KEY_INT, threads, 0, 1024, "0", "threads per rank; 0: the node's cores shared by its ranks"),
    STR("gpu_math", gpu_math, "fp32|tf32|bf16", "\"fp32\"", "GPU products: plain FP32, or tensor cores on TF32 or BF16 inputs with FP32 sums"),
    DATASET_KEYS("dataset.", dataset, "t10k"),
    DATASET_KEYS("train.dataset.", train.dataset, "train"),
    NUM("train.epochs", SR_KEY_INT, train.epochs, 1, 1e6, "10", "passes over the training data"),
    NUM("train.batch", SR_KEY_INT, train.batch, 1, 65536, "128", "images per step, over all ranks"),
    NUM("train.lr", SR_KEY_FLOAT, train.lr, 1e-9, 1, "0.001", "Adam's learning rate"),
    NUM("train.lr_step", SR_KEY_INT, train.lr_step, 1, 1e6, "100", "step schedule: halve the learning rate every lr_step epochs"),
    STR("train.lr_schedule", train.lr_schedule, "step|cosine|constant", "\"step\"", "step: halved every lr_step epochs; cosine: from lr down to 0 at the last step of train.epochs; constant: lr throughout"),
    FILE_KEY("train.init", train.init, "\"\"", "a model file whose weights a new training starts from, with a fresh optimiser (its shape must be the conf's); \"\": SPEC.md's random initialisation"),
    STR("train.sigma_dist", train.sigma_dist, "inv_sqrt|uniform", "\"inv_sqrt\"", "how sigma is drawn per image (SPEC.md section 2)"),
    NUM("train.sigma_min", SR_KEY_FLOAT, train.sigma_min, 0, 10, "0.0", "lowest training sigma, pixel units (1.0 = 255)"),
    NUM("train.sigma_max", SR_KEY_FLOAT, train.sigma_max, 0, 10, "1.0", "highest training sigma, pixel units"),
    NUM("train.checkpoint_every", SR_KEY_INT, train.checkpoint_every, 1, BIG, "500", "steps between checkpoints"),
    NUM("train.run_steps", SR_KEY_INT, train.run_steps, 0, BIG, "0", "stop this run after this many steps, checkpointed (a time-boxed job; the next run resumes); 0: to the end"),
    NUM("train.heldout_images", SR_KEY_INT, train.heldout_images, 0, BIG, "1000", "after every epoch and at the end of every run, the training loss on the first this many images of `dataset` (held out: training never sees them) goes into the curve; 0: none (training then does not open `dataset`)"),
    NUM("train.patience", SR_KEY_INT, train.patience, 0, 1e6, "0", "end training (done) once the held-out loss has not improved for this many evaluations; 0: train every epoch"),
    FILE_KEY("model.checkpoint", model.checkpoint, "\"\"", "the model file (NetCDF, docs/formats.md); \"\": <output_dir>/checkpoint.nc"),
    NUM("model.in_channels", SR_KEY_INT, model.in_channels, 1, 4, "1", "image channels the model takes"),
    LIST("model.kernels", SR_KEY_INTS, model.kernels, model.nkernels, 1, SR_MAX_CHANNELS, "[32, 64, 128, 256]", "channels of encoder blocks 0..n-1, then of the middle block"),
    LIST("model.enc_convs", SR_KEY_INTS, model.enc_convs, model.nenc, 1, SR_MAX_CONVS, "[2, 2, 2]", "convolutions per encoder block"),
    NUM("model.mid_convs", SR_KEY_INT, model.mid_convs, 1, SR_MAX_CONVS, "3", "convolutions in the middle block"),
    LIST("model.dec_convs", SR_KEY_INTS, model.dec_convs, model.ndec, 1, SR_MAX_CONVS, "[2, 2, 2]", "convolutions per decoder block 0..n-1 (block 0's count includes the final conv)"),
    {"model.upsample_bias", SR_KEY_BOOL, AT(model.upsample_bias), 0, sizeof(bool), 0, 1, NULL, "false", "a bias on upsample.b for b > 0 (the authors' upsample_with_bias variant)", false},
    STR("model.norm", model.norm, "layer|batch", "\"layer\"", "StdNorm per image (layer) or per channel with running_sd (batch)"),
    STR("model.output", model.output, "clean|residual", "\"clean\"", "the network outputs the clean image, or the noise (x_hat = y - f(y))"),
    LIST("phi.sigmas", SR_KEY_FLOATS, phi.sigmas, phi.nsigmas, 0, 10, "[0.0, 0.1, 0.2, 0.4]", "noise levels of phi, pixel units (0.2 = 51 of 255)"),
    NUM("phi.draws", SR_KEY_INT, phi.draws, 1, 10000, "20", "noise draws averaged per image at sigma > 0 (one at sigma = 0)"),
    NUM("phi.batch", SR_KEY_INT, phi.batch, 1, 65536, "64", "images per pass (each with its draws)"),
    NUM("phi.run_chunks", SR_KEY_INT, phi.run_chunks, 0, BIG, "0", "stop this run after computing this many chunks per rank (a time-boxed job; the next run resumes); 0: to the end"),
    {"phi.block_means", SR_KEY_BOOL, AT(phi.block_means), 0, sizeof(bool), 0, 1, NULL, "true", "also keep every block's channel means (runs the decoder)", false},
    NUM("stats.active_threshold", SR_KEY_FLOAT, stats.active_threshold, 0, 1, "0.1", "a channel is active in an image when above this share of the image's largest channel (docs/analysis.md)"),
    NUM("stats.nonselective_share", SR_KEY_FLOAT, stats.nonselective_share, 0, 1, "0.9", "a channel active in at least this share of the images is non-selective"),
    NUM("stats.pr_bins", SR_KEY_INT, stats.pr_bins, 2, 1000, "20", "bins of the participation-ratio histograms over [0, 1]"),
    LIST("cluster.k", SR_KEY_INTS, cluster.k, cluster.nk, 2, 100000, "[10, 100]", "the numbers of clusters k-means makes"),
    LIST("cluster.sigmas", SR_KEY_FLOATS, cluster.sigmas, cluster.nsigmas, 0, 10, "[]", "the sigmas of phi.nc to cluster, pixel units; []: all of them"),
    NUM("cluster.restarts", SR_KEY_INT, cluster.restarts, 1, 1000, "10", "k-means runs from different seeds; the lowest inertia is kept"),
    NUM("cluster.max_iter", SR_KEY_INT, cluster.max_iter, 1, 100000, "100", "Lloyd iterations at most per run"),
    NUM("cluster.neighbours", SR_KEY_INT, cluster.neighbours, 10, 1000, "10", "nearest neighbours kept per image (at least 10, for 10-NN accuracy)"),
    NUM("cluster.members", SR_KEY_INT, cluster.members, 1, 1000, "16", "images kept per cluster, nearest its centre (the report's grids)"),
    {"cluster.pixels", SR_KEY_BOOL, AT(cluster.pixels), 0, sizeof(bool), 0, 1, NULL, "true", "also cluster the raw pixels of the same images: the baseline", false},
    NUM("cluster.exact_max", SR_KEY_INT, cluster.exact_max, 2, BIG, "100000", "up to this many images, neighbours and active-set overlaps are exact over all pairs; above it, measured on seeded samples"),
    NUM("cluster.queries", SR_KEY_INT, cluster.queries, 10, 10000000, "10000", "above cluster.exact_max: the seeded sample of images whose exact neighbours give the k-NN accuracy"),
    NUM("cluster.pixel_dims", SR_KEY_INT, cluster.pixel_dims, 16, 1000000, "4096", "pixel baseline: images with more pixels than this are randomly projected (Johnson-Lindenstrauss) to this many dimensions"),
    {"probe.enabled", SR_KEY_BOOL, AT(probe.enabled), 0, sizeof(bool), 0, 1, NULL, "true", "the cluster stage's linear probe: a logistic regression on phi and on the pixels (docs/analysis.md)", false},
    NUM("probe.test_share", SR_KEY_FLOAT, probe.test_share, 0.01, 0.99, "0.2", "the share of each class's images held out as the probe's test part (a seeded split)"),
    NUM("probe.lambda", SR_KEY_FLOAT, probe.lambda, 0, 1e6, "0.01", "the probe's L2 strength: it minimises the mean cross-entropy + lambda/2 |W|^2 (scikit-learn's C = 1 / (lambda x training images))"),
    NUM("probe.iterations", SR_KEY_INT, probe.iterations, 1, 1000000, "1000", "the probe's L-BFGS iterations at most"),
    NUM("probe.tolerance", SR_KEY_FLOAT, probe.tolerance, 0, 1, "1e-4", "the probe stops when every component of its gradient is below this"),
    STR("reconstruct.sampler", reconstruct.sampler, "fixed|adaptive|unconditional", "\"fixed\"", "the fixed-schedule sampler (the authors' figures), the adaptive one, or unconditional synthesis (SPEC.md section 6)"),
    LIST("reconstruct.targets", SR_KEY_INTS, reconstruct.targets, reconstruct.ntargets, 0, 1e9, "[]", "images of the data set (positions) whose phi the samples match"),
    NUM("reconstruct.random", SR_KEY_INT, reconstruct.random, 0, 100000, "0", "that many more target images, drawn by the seed"),
    LIST("reconstruct.clusters", SR_KEY_INTS, reconstruct.clusters, reconstruct.nclusters, 0, 1e9, "[]", "clusters of clusters.nc whose members' mean phi the samples match"),
    NUM("reconstruct.cluster_k", SR_KEY_INT, reconstruct.cluster_k, 0, 100000, "0", "which K of clusters.nc the clusters are of; 0: the first"),
    NUM("reconstruct.cluster_sigma", SR_KEY_FLOAT, reconstruct.cluster_sigma, 0, 10, "0.2", "which sigma of clusters.nc the clusters are of, pixel units"),
    NUM("reconstruct.samples", SR_KEY_INT, reconstruct.samples, 1, 100000, "4", "samples per target (the unconditional sampler: in all)"),
    NUM("reconstruct.batch", SR_KEY_INT, reconstruct.batch, 1, 65536, "16", "samples computed together (a unit of work, of crash safety and of sharding)"),
    STR("reconstruct.mask", reconstruct.mask, "all|selective|nonselective", "\"all\"", "the channels the projection matches: all, or one kind from stats.nc"),
    NUM("reconstruct.mask_sigma", SR_KEY_FLOAT, reconstruct.mask_sigma, 0, 10, "0.2", "the sigma of stats.nc whose channel kinds make the mask, pixel units"),
    NUM("reconstruct.steps", SR_KEY_INT, reconstruct.steps, 1, 100000, "100", "fixed sampler: its steps, sigma from sigma_max down to sigma_min"),
    NUM("reconstruct.sigma_max", SR_KEY_FLOAT, reconstruct.sigma_max, 0, 10, "1.0", "fixed sampler: the first sigma, pixel units"),
    NUM("reconstruct.sigma_min", SR_KEY_FLOAT, reconstruct.sigma_min, 0, 10, "0.03", "fixed sampler: the last sigma, pixel units"),
    NUM("reconstruct.draws", SR_KEY_INT, reconstruct.draws, 1, 10000, "10", "noise draws of a target's phi at each sigma"),
    NUM("reconstruct.lr", SR_KEY_FLOAT, reconstruct.lr, 1e-9, 10, "0.01", "the projection's Adam learning rate on the pixels"),
    NUM("reconstruct.max_iter", SR_KEY_INT, reconstruct.max_iter, 1, 100000, "100", "the projection's iterations at most"),
    NUM("reconstruct.stop_ratio", SR_KEY_FLOAT, reconstruct.stop_ratio, 0, 1, "0.01", "the projection stops when its loss is below this share of its first"),
    NUM("reconstruct.sigma0", SR_KEY_FLOAT, reconstruct.sigma0, 0, 10, "1.0", "adaptive samplers: the starting noise, pixel units"),
    NUM("reconstruct.h0", SR_KEY_FLOAT, reconstruct.h0, 1e-9, 1, "0.01", "adaptive samplers: the first step size"),
    NUM("reconstruct.beta", SR_KEY_FLOAT, reconstruct.beta, 1e-9, 1, "0.01", "adaptive conditional sampler: the noise injection (beta)"),
    NUM("reconstruct.beta_unconditional", SR_KEY_FLOAT, reconstruct.beta_unconditional, 1e-9, 1, "0.5", "unconditional sampler: beta"),
    NUM("reconstruct.sigma_l", SR_KEY_FLOAT, reconstruct.sigma_l, 1e-9, 10, "0.01", "adaptive samplers: stop when the effective sigma falls below this"),
    NUM("reconstruct.max_steps", SR_KEY_INT, reconstruct.max_steps, 1, 1000000, "2000", "adaptive samplers: a sample still above sigma_l after this many steps is reported as failed"),
    LIST("reconstruct.analysis_sigmas", SR_KEY_FLOATS, reconstruct.analysis_sigmas, reconstruct.nanalysis, 0, 10, "[0.0, 0.2]", "sigmas at which the samples' phi is compared with the target's, pixel units"),
    NUM("reconstruct.tasks", SR_KEY_INT, reconstruct.tasks, 1, 100000, "1", "SLURM array tasks sharing the work"),
    NUM("reconstruct.task", SR_KEY_INT, reconstruct.task, 0, 99999, "0", "this array task (0 .. tasks-1); the run that finds every share done writes recon.nc"),
    NUM("reconstruct.run_batches", SR_KEY_INT, reconstruct.run_batches, 0, BIG, "0", "stop this run after this many batches per rank (the next run resumes); 0: to the end"),
    NUM("report.map_sample", SR_KEY_INT, report.map_sample, 3, 100000, "5000", "images in each sigma's 2-D map of phi (a PCA), a seeded sample; all of them when fewer"),
};

const int sr_conf_key_count = (int)(sizeof sr_conf_keys / sizeof sr_conf_keys[0]);
