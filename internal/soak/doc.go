// Package soak holds the load, leak and backpressure tests of mqttws with a
// real broker (mochi-mqtt in process): many connections at once, clients
// that stop reading, and the memory these cost. Its clients run in a child
// process, so that client and server each get their own file-descriptor
// limit.
package soak
