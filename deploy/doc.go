// Package deploy holds the default gateway.yaml baked into the container images and the
// tests that keep the Dockerfile, the Kubernetes example and the systemd unit consistent.
package deploy
