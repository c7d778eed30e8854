// coord-peer: the reference leader-election implementations weft's coordination
// backends are benchmarked against — client-go's leaderelection (LeaseLock) and
// etcd's concurrency.Election — as a candidate process that prints the same JSON
// events as weft's test/support/coord-candidate.ts (ready, elected, stepdown).
//
// Usage: coord-peer kube|etcd -name N -id ID [-kubeconfig P -namespace NS | -endpoints URL]
//        [-lease 3s -renew 2s -retry 500ms]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func emit(ev map[string]any) {
	ev["at"] = time.Now().UnixMilli()
	b, _ := json.Marshal(ev)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: coord-peer kube|etcd [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	name := fs.String("name", "", "election name")
	id := fs.String("id", "", "candidate id")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig path")
	namespace := fs.String("namespace", "default", "namespace")
	endpoints := fs.String("endpoints", "", "etcd endpoint URL")
	lease := fs.Duration("lease", 3*time.Second, "lease duration")
	renew := fs.Duration("renew", 2*time.Second, "renew deadline")
	retry := fs.Duration("retry", 500*time.Millisecond, "retry period")
	_ = fs.Parse(os.Args[2:])
	if *name == "" || *id == "" {
		fmt.Fprintln(os.Stderr, "-name and -id are required")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	switch mode {
	case "kube":
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		client := kubernetes.NewForConfigOrDie(cfg)
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: "peer-" + *name, Namespace: *namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: *id},
		}
		emit(map[string]any{"ev": "ready", "id": *id})
		for ctx.Err() == nil {
			leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
				Lock: lock, LeaseDuration: *lease, RenewDeadline: *renew, RetryPeriod: *retry, ReleaseOnCancel: true,
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: func(c context.Context) {
						token := -1
						if rec, _, err := lock.Get(c); err == nil {
							token = rec.LeaderTransitions
						}
						emit(map[string]any{"ev": "elected", "id": *id, "token": token})
					},
					OnStoppedLeading: func() { emit(map[string]any{"ev": "stepdown", "id": *id, "reason": "client-go OnStoppedLeading"}) },
				},
			})
		}
	case "etcd":
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoints}, DialTimeout: *renew})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer cli.Close()
		emit(map[string]any{"ev": "ready", "id": *id})
		for ctx.Err() == nil {
			sess, err := concurrency.NewSession(cli, concurrency.WithTTL(int((*lease).Seconds())))
			if err != nil {
				time.Sleep(*retry)
				continue
			}
			e := concurrency.NewElection(sess, "peer-election/"+*name)
			if err := e.Campaign(ctx, *id); err != nil {
				sess.Close()
				continue
			}
			emit(map[string]any{"ev": "elected", "id": *id, "token": e.Rev()})
			select {
			case <-sess.Done():
				emit(map[string]any{"ev": "stepdown", "id": *id, "reason": "etcd session done"})
			case <-ctx.Done():
				_ = e.Resign(context.Background())
				emit(map[string]any{"ev": "stepdown", "id": *id, "reason": "resigned"})
			}
			sess.Close()
		}
	default:
		fmt.Fprintln(os.Stderr, "mode must be kube or etcd")
		os.Exit(2)
	}
}
