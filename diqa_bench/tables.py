"""The columns of a run's two main tables, in a module that imports nothing, so that checking a
config, listing plugins and reading a stored run need not load the statistics (scipy)."""

METRIC_COLUMNS = ["method", "train", "test", "seed", "statistic", "value", "ci_low", "ci_high", "n", "std", "groups"]
# then a dataset's declared metadata columns (strata), if any
SCORE_COLUMNS = ["image", "dataset", "domain", "method", "train", "seed", "score", "mos", "mos_norm", "group", "distortion", "level", "path"]
# the seed of the rows that aggregate a cell over its split seeds
AGGREGATE_SEED = "all"
