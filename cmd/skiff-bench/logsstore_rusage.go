package main

import "syscall"

type syscallRusage struct{ user, sys float64 }

func getrusage(r *syscallRusage) error {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	r.user = float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
	r.sys = float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
	return nil
}
