"""Kubernetes manifests (pure builders) and the one cluster client."""
