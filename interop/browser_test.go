package interop

import (
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// browserClient is a JavaScript MQTT client run in Chromium by page.mjs.
type browserClient struct {
	name    string
	lib     string // "paho" (npm paho-mqtt) or "mqttjs" (npm mqtt's browser bundle)
	version int    // MQTT protocol level
}

var browserClients = []browserClient{
	{
		name:    "paho-mqtt/MQTT-3.1",
		lib:     "paho",
		version: 3,
	},
	{
		name:    "paho-mqtt/MQTT-3.1.1",
		lib:     "paho",
		version: 4,
	},
	{
		name:    "mqtt.js/MQTT-3.1.1",
		lib:     "mqttjs",
		version: 4,
	},
	{
		name:    "mqtt.js/MQTT-5",
		lib:     "mqttjs",
		version: 5,
	},
}

// browserSizes are the payloads every browser client sends and receives.
var browserSizes = []int{0, 10, 200 << 10}

// browserQoS is the QoS of the browser transfers: acknowledged.
const browserQoS = 1

// demoTexts are what the two tabs of the demo page say to each other.
var demoTexts = []string{
	"hello from the first tab, héllo 世界",
	"and back from the second tab ✓",
}

// Bounds of a browser step (a client's run, a page load, a wait for the
// demo page) and of the whole run, Chromium's start included.
const (
	browserStepTimeout = 60 * time.Second
	browserRunTimeout  = 4 * time.Minute
)

type browserPlan struct {
	ExecutablePath string          `json:"executablePath"`
	UserDataDir    string          `json:"userDataDir"`
	PageServer     string          `json:"pageServer"`
	TimeoutMs      int             `json:"timeoutMs"`
	Targets        []browserTarget `json:"targets"`
}

type browserTarget struct {
	Name    string              `json:"name"`
	Origin  string              `json:"origin"`
	URL     string              `json:"url"`
	Clients []browserClientPlan `json:"clients"`
	Demo    *demoPlan           `json:"demo"`
}

type browserClientPlan struct {
	Name     string        `json:"name"`
	Lib      string        `json:"lib"`
	Version  int           `json:"version"`
	QoS      int           `json:"qos"`
	Topic    string        `json:"topic"`
	Payloads []payloadPlan `json:"payloads"`
}

type payloadPlan struct {
	Size int    `json:"size"`
	Seed uint32 `json:"seed"`
}

type demoPlan struct {
	URL   string   `json:"url"`
	Texts []string `json:"texts"`
}

type browserResult struct {
	Targets []struct {
		Name    string `json:"name"`
		Clients []struct {
			Name         string    `json:"name"`
			Error        string    `json:"error"`
			Subprotocols []string  `json:"subprotocols"`
			Granted      int       `json:"granted"`
			Messages     []message `json:"messages"`
		} `json:"clients"`
		CrossOrigin struct {
			Opened   bool   `json:"opened"`
			Protocol string `json:"protocol"`
			Code     int    `json:"code"`
			Error    string `json:"error"`
		} `json:"crossOrigin"`
		Demo *demoResult `json:"demo"`
	} `json:"targets"`
}

type demoResult struct {
	Error     string   `json:"error"`
	IDs       []string `json:"ids"`
	Exchanges []struct {
		Sender       demoLine `json:"sender"`
		Receiver     demoLine `json:"receiver"`
		InputCleared bool     `json:"inputCleared"`
	} `json:"exchanges"`
}

// demoLine is a message as a tab of the demo page shows it.
type demoLine struct {
	From string `json:"from"`
	Mine bool   `json:"mine"`
	Text string `json:"text"`
}

// TestInChromium runs JavaScript clients in headless Chromium, on a page
// served by the test and placed at each target's origin: Paho (MQTT 3.1 and
// 3.1.1) and MQTT.js (3.1.1 and 5) send each other payloads of 0 B, 10 B
// and 200 KiB through both examples and through mosquitto's own listener.
// The embedded example's demo page carries messages between two tabs. A
// page from another origin is refused by mqttws by default, and not by
// mosquitto, which has no origin check; the embedded example run with
// -allow-origin for it lets it in.
func TestInChromium(t *testing.T) {
	t.Parallel()
	needNode(t)
	needFile(t, chromiumPath, "chromium")
	pageServer := servePage(t)
	targets := startTargets(t)
	// The embedded example again, allowing the page server's origin.
	allowing := startEmbedded(t, "-allow-origin", strings.TrimPrefix(pageServer, "http://"))
	allowing.name = embeddedName + "-allow-origin"
	plan := browserPlan{
		ExecutablePath: chromiumPath,
		UserDataDir:    filepath.Join(t.TempDir(), "chromium"),
		PageServer:     pageServer,
		TimeoutMs:      int(browserStepTimeout / time.Millisecond),
	}
	for _, tg := range append(targets, allowing) {
		bt := browserTarget{Name: tg.name, Origin: tg.origin, URL: tg.url}
		if tg == allowing {
			// Only the cross-origin probe.
			plan.Targets = append(plan.Targets, bt)
			continue
		}
		for _, c := range browserClients {
			cp := browserClientPlan{Name: c.name, Lib: c.lib, Version: c.version, QoS: browserQoS, Topic: "interop/browser/" + c.name}
			for _, n := range browserSizes {
				cp.Payloads = append(cp.Payloads, payloadPlan{Size: n, Seed: seedOf(c.name + sizeName(n))})
			}
			bt.Clients = append(bt.Clients, cp)
		}
		if tg.name == embeddedName {
			bt.Demo = &demoPlan{URL: tg.origin + "/", Texts: demoTexts}
		}
		plan.Targets = append(plan.Targets, bt)
	}

	var out browserResult
	if err := runScript(t, browserRunTimeout, "browser.mjs", plan, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Targets) != len(plan.Targets) {
		t.Fatalf("js/browser.mjs reported %d targets, want %d", len(out.Targets), len(plan.Targets))
	}

	t.Run("EveryClientGetsEveryPayloadByteExact", func(t *testing.T) {
		for i, tg := range targets {
			got := out.Targets[i]
			if got.Name != tg.name || len(got.Clients) != len(plan.Targets[i].Clients) {
				t.Fatalf("js/browser.mjs reported %d clients of %q in place of %q's %d", len(got.Clients), got.Name, tg.name, len(plan.Targets[i].Clients))
			}
			for j, c := range plan.Targets[i].Clients {
				r := got.Clients[j]
				t.Run(tg.name+"/"+c.Name, func(t *testing.T) {
					if r.Error != "" {
						t.Fatalf("in Chromium: %s", r.Error)
					}
					want := subprotocolFor(c.Version)
					if len(r.Subprotocols) != 2 || r.Subprotocols[0] != want || r.Subprotocols[1] != want {
						t.Errorf("negotiated subprotocols %q, want %q for both clients", r.Subprotocols, want)
					}
					if r.Granted != c.QoS {
						t.Errorf("SUBACK granted QoS %d, want %d", r.Granted, c.QoS)
					}
					if len(r.Messages) != len(c.Payloads) {
						t.Fatalf("%d messages, want %d", len(r.Messages), len(c.Payloads))
					}
					for k, p := range c.Payloads {
						wantMessage{topic: c.Topic, qos: c.QoS, size: p.Size, seed: p.Seed}.check(t, sizeName(p.Size)+" message", &r.Messages[k])
					}
				})
			}
		}
	})

	t.Run("TheDemoPageCarriesMessagesBetweenTwoTabs", func(t *testing.T) {
		for _, r := range out.Targets {
			if r.Name == embeddedName && r.Demo != nil {
				checkDemo(t, r.Demo)
				return
			}
		}
		t.Fatal("js/browser.mjs reported no run of the embedded example's demo page")
	})

	t.Run("APageFromAnotherOriginIsRefusedByMqttwsNotByMosquitto", func(t *testing.T) {
		for i, tg := range targets {
			t.Run(tg.name, func(t *testing.T) {
				r := out.Targets[i].CrossOrigin
				switch {
				case r.Error != "":
					t.Fatalf("in Chromium: %s", r.Error)
				case tg.mqttws && r.Opened:
					t.Errorf("a page from %s opened a WebSocket to %s: mqttws must refuse a foreign origin by default", plan.PageServer, tg.url)
				case tg.mqttws:
					// The browser only sees the connection fail: make sure
					// it was the origin check.
					if code := upgradeStatus(t, tg.url, plan.PageServer); code != http.StatusForbidden {
						t.Errorf("an upgrade request with Origin %s got %d, want %d", plan.PageServer, code, http.StatusForbidden)
					}
				case !tg.mqttws && !r.Opened:
					t.Errorf("a page from %s could not open a WebSocket to mosquitto (close code %d): mosquitto checks no origin", plan.PageServer, r.Code)
				case !tg.mqttws:
					t.Logf("expected difference of mosquitto's own listener: it accepts a page from any origin (subprotocol %q)", r.Protocol)
				}
			})
		}
	})

	t.Run("APageFromAnAllowedOriginConnects", func(t *testing.T) {
		r := out.Targets[len(targets)].CrossOrigin
		switch {
		case r.Error != "":
			t.Fatalf("in Chromium: %s", r.Error)
		case !r.Opened:
			t.Fatalf("a page from %s could not open a WebSocket to the embedded example run with -allow-origin %s (close code %d)", pageServer, strings.TrimPrefix(pageServer, "http://"), r.Code)
		case r.Protocol != "mqtt":
			t.Errorf("negotiated subprotocol %q, want %q", r.Protocol, "mqtt")
		}
	})
}

// checkDemo judges the two-tab exchange on the demo page.
func checkDemo(t *testing.T, d *demoResult) {
	t.Helper()
	if d.Error != "" {
		t.Fatalf("in Chromium: %s", d.Error)
	}
	if len(d.IDs) != 2 || d.IDs[0] == "" || d.IDs[1] == "" || d.IDs[0] == d.IDs[1] {
		t.Fatalf("client ids shown by the tabs: %q, want two different ones", d.IDs)
	}
	if len(d.Exchanges) != 2 {
		t.Fatalf("%d exchanges, want 2", len(d.Exchanges))
	}
	for i, e := range d.Exchanges {
		from := d.IDs[i]
		what := fmt.Sprintf("tab %d's message %q", i+1, demoTexts[i])
		if want := (demoLine{From: from, Mine: true, Text: demoTexts[i]}); e.Sender != want {
			t.Errorf("%s, as its own tab shows it: %+v, want %+v", what, e.Sender, want)
		}
		if want := (demoLine{From: from, Mine: false, Text: demoTexts[i]}); e.Receiver != want {
			t.Errorf("%s, as the other tab shows it: %+v, want %+v", what, e.Receiver, want)
		}
		if !e.InputCleared {
			t.Errorf("%s: the input was not cleared after Publish", what)
		}
	}
}

// upgradeStatus returns the HTTP status of a WebSocket upgrade request to
// url with the given Origin.
func upgradeStatus(t *testing.T, url, origin string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http"+strings.TrimPrefix(url, "ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "mqtt")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	client.CloseIdleConnections()
	return resp.StatusCode
}

// pageFiles are what the page server serves: the test page, and the npm
// packages' browser bundles from node_modules.
var pageFiles = map[string]string{
	"/interop/page.html":           "js/page.html",
	"/interop/page.mjs":            "js/page.mjs",
	"/interop/payload.mjs":         "js/payload.mjs",
	"/interop/vendor/mqtt.min.js":  "node_modules/mqtt/dist/mqtt.min.js",
	"/interop/vendor/paho-mqtt.js": "node_modules/paho-mqtt/paho-mqtt.js",
}

// servePage serves pageFiles on 127.0.0.1 and returns the server's URL.
func servePage(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	for path, file := range pageFiles {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			ext := filepath.Ext(file)
			if ext == ".mjs" {
				ext = ".js"
			}
			w.Header().Set("Content-Type", mime.TypeByExtension(ext))
			w.Header().Set("Cache-Control", "no-store")
			http.ServeFile(w, r, file)
		})
	}
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL
}
