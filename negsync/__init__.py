"""negsync: container-native load balancing for Kubernetes with honest drain handling."""

__version__ = "0.1.0"
