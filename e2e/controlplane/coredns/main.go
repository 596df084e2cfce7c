// Command coredns is CoreDNS with only the plugins a cluster's DNS add-on needs: kubernetes
// (serving *.svc.cluster.local from Services and EndpointSlices), errors, log, health, ready,
// cache and loadbalance. Built apart from kcp so that CoreDNS's global flags stay out of the
// Kubernetes components' command lines. CoreDNS keeps its own directive order; plugins not
// imported here are simply not available to a Corefile.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
