"""advlab: adversarial robustness of clustering (k-means) and image classifiers.

Data flows one way: ``data`` -> ``models``/``cluster`` -> ``attacks``/``defenses``
-> ``metrics`` -> ``experiments`` -> ``report``; ``cli`` sits on top.
"""

__version__ = "0.2.0"
