# Versions of the test control plane. Source, don't run. Override with the environment.
# (Prefixed WEFT_: etcd reads every ETCD_* variable as a flag, and kwok reads KWOK_*.)
WEFT_K8S_VERSION="${WEFT_K8S_VERSION:-v1.35.4}"
WEFT_KWOK_VERSION="${WEFT_KWOK_VERSION:-v0.8.0}"
# etcd built from go.etcd.io/etcd/server/v3: the version k8s.io/kubernetes v1.35.4 requires.
WEFT_ETCD_VERSION="${WEFT_ETCD_VERSION:-v3.6.5}"
