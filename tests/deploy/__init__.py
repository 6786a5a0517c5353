"""Deployment artifacts (deploy/): systemd units, Kubernetes manifests, the Dockerfile."""
