# Versions of the test control plane. Source, don't run. Override with the environment.
K8S_VERSION="${K8S_VERSION:-v1.35.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
export K8S_VERSION KWOK_VERSION
