"""Built-in experiments, listed explicitly: the registry imports these modules by name on
first use (each registers itself with ``advlab.experiments.registry.register``)."""

BUILTIN_MODULES = (
    "clustering_attacks",
    "demo",
    "elbow",
    "evaluate",
    "evaluate_clustering",
    "evaluate_kmeans",
    "mygdalis2020",
    "omari2024",
    "poison_cluster",
    "transfer",
)
