// Command pause is the sandbox process of every pod on weft's real test node: it holds the
// pod's namespaces, sleeps until SIGTERM or SIGINT, and reaps children it inherits as PID 1.
// Built at set-up (CGO_ENABLED=0, static) so the node never downloads a pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
