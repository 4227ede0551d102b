// Package interop holds the interoperability tests of mqttws: real MQTT
// clients, in a real browser, in Node and in Go, against the two example
// programs (examples/embedded with its in-process mochi broker, and
// examples/proxy in front of a mosquitto), through nginx, and side by side
// with mosquitto's own WebSocket listener as the reference.
//
// Everything runs from go test on 127.0.0.1. The peers are Debian's
// chromium, nginx and mosquitto, Node 20 or later, and the npm packages of
// package-lock.json in this directory (npm ci); ./scripts/test.sh installs
// them when missing. A missing peer fails the tests, with the command that
// installs it. The examples are built once per run, with the race detector
// when the tests have it, and must stop cleanly on SIGTERM.
//
// The JavaScript lives in js/: clients.mjs runs MQTT.js in Node,
// browser.mjs drives Chromium with playwright-core through page.html and
// page.mjs. Both read a plan as JSON on stdin and print what each client
// saw as JSON (lengths and SHA-256 of payloads that payload.mjs and
// payload() generate alike); the Go tests decide what is right.
//
// Where the reference legitimately differs, the tests expect the
// difference and log it: mosquitto accepts pages from any origin (mqttws
// refuses foreign ones by default), and its listener (libwebsockets) answers
// only some of many pings. mochi, behind the embedded example, refuses a
// last will with an empty payload, which mosquitto accepts.
package interop
