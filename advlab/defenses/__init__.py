"""Defenses: adversarial training of k-means (Algorithm 1), its training attacks, and
outlier-discarding k-means variants against poisoning, the M-SVDD-D classifier defense, and
interval bound propagation over L-inf boxes and L2 balls (certified accuracy and certified
training of ReLU networks, cached for the model zoo, and
certificates of k-means on a network's features), certified radii by bisection on those
certificates, and
linear (CROWN) bounds through ReLU, piecewise-linear and smooth activations, exact L-inf
verification of small ReLU networks, and of k-means on their features, by mixed-integer
programming; randomized smoothing (certified L2 radii of any classifier)."""

from advlab.defenses.certified_radius import certified_radius, kmeans_certified_radius_through
from advlab.defenses.certified_training import train_certified_classifier
from advlab.defenses.interval_bounds import (
    IBPHistory,
    certified_accuracy,
    check_certifiable,
    interval_bounds,
    is_certified,
    margin_lower_bounds,
    train_ibp,
)
from advlab.defenses.kmeans_adversarial_training import KMeansAdversarialTraining
from advlab.defenses.kmeans_ibp import kmeans_is_certified
from advlab.defenses.kmeans_milp import (
    KMeansVerification,
    kmeans_is_certified_linear,
    verify_kmeans_linf,
)
from advlab.defenses.milp_verification import (
    ATTACKED,
    ROBUST,
    UNKNOWN,
    Verification,
    check_verifiable,
    is_certified_linear,
    linear_bound_chain,
    verify_linf,
)
from advlab.defenses.msvdd import MSVDDDefense, SVDDLayer, SVDDNetwork
from advlab.defenses.randomized_smoothing import (
    RandomizedSmoothing,
    SmoothedCertificate,
    lower_confidence_bound,
)
from advlab.defenses.robust_kmeans import KMeansMinusMinus, NKMeans, SanitizedKMeans, TrimmedKMeans
from advlab.defenses.training_attacks import KMeansWhiteBoxAttack, SurrogateAttack, TrainingAttack

__all__ = [
    "ATTACKED",
    "ROBUST",
    "UNKNOWN",
    "IBPHistory",
    "KMeansAdversarialTraining",
    "KMeansMinusMinus",
    "KMeansVerification",
    "KMeansWhiteBoxAttack",
    "MSVDDDefense",
    "NKMeans",
    "RandomizedSmoothing",
    "SVDDLayer",
    "SVDDNetwork",
    "SanitizedKMeans",
    "SmoothedCertificate",
    "SurrogateAttack",
    "TrainingAttack",
    "TrimmedKMeans",
    "Verification",
    "certified_accuracy",
    "certified_radius",
    "check_certifiable",
    "check_verifiable",
    "interval_bounds",
    "is_certified",
    "is_certified_linear",
    "kmeans_certified_radius_through",
    "kmeans_is_certified",
    "kmeans_is_certified_linear",
    "linear_bound_chain",
    "lower_confidence_bound",
    "margin_lower_bounds",
    "train_certified_classifier",
    "train_ibp",
    "verify_kmeans_linf",
    "verify_linf",
]
