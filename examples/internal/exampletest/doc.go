// Package exampletest runs the example programs in tests as a user would:
// built once per test binary, started as child processes on a loopback
// port, attacked through their listener, stopped with SIGTERM, and measured
// through /proc. Its attack helpers dial from chosen loopback addresses
// (on Linux all of 127.0.0.0/8 is loopback), so that tests can tell client
// addresses apart.
package exampletest
