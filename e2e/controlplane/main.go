// Command kcp is the real Kubernetes control plane the e2e tests run on: one multi-call binary
// holding kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd and kubectl,
// each run as its own process (the first argument, or the name the binary is invoked by, picks
// the component). One binary means one link on a 2-core machine instead of five, while separate
// processes keep the components' global state apart, as in a real cluster.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if name == "kcp" {
		if len(os.Args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: kcp kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|etcd|kubectl [flags]")
			os.Exit(2)
		}
		name = os.Args[1]
		args = os.Args[1:]
	}
	switch name {
	case "kube-apiserver":
		os.Args = args
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Args = args
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Args = args
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kube-proxy":
		os.Args = args
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "kubectl":
		os.Args = args
		// As kubectl's own main does: errors printed kubectl's way, with its exit codes.
		if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
			cmdutil.CheckErr(err)
		}
		os.Exit(0)
	case "etcd":
		etcdmain.Main(args)
	default:
		fmt.Fprintf(os.Stderr, "kcp: unknown component %q\n", name)
		os.Exit(2)
	}
}
