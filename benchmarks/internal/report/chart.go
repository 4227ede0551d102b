package report

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// Panel is one grouped bar chart: for each group (a payload size, say) one
// bar per series (a server).
type Panel struct {
	Title  string
	Unit   string
	Log    bool // logarithmic scale, for values spanning decades
	Groups []string
	Series []string
	Values [][]float64 // [group][series]; NaN where not measured
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 980
	panelHeight = 300
	marginLeft  = 80
	marginRight = 20
	marginTop   = 48
	marginBot   = 40
)

// palette gives each series a color; mqttws ones come first in every panel.
var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// WriteSVG draws the panels one above the other into path. It is plain SVG
// written by hand: no tool is needed to make or view it.
func WriteSVG(path, title string, panels []Panel) error {
	var b strings.Builder
	height := 40 + len(panels)*panelHeight
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, html.EscapeString(title))
	for i, p := range panels {
		p.draw(&b, 40+i*panelHeight)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// draw renders the panel with its top at y0.
func (p Panel) draw(b *strings.Builder, y0 int) {
	plotTop := float64(y0 + marginTop)
	plotBot := float64(y0 + panelHeight - marginBot)
	plotLeft := float64(marginLeft)
	plotRight := float64(chartWidth - marginRight)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", marginLeft, y0+18, html.EscapeString(p.Title))

	// Legend, right of the title.
	x := plotRight
	for i := len(p.Series) - 1; i >= 0; i-- {
		w := float64(7*len(p.Series[i]) + 24)
		x -= w
		fmt.Fprintf(b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">%s</text>`+"\n",
			x, y0+28, palette[i%len(palette)], x+16, y0+38, html.EscapeString(p.Series[i]))
	}

	lo, hi := p.scale()
	yOf := func(v float64) float64 {
		if p.Log {
			v = math.Log10(math.Max(v, lo))
			return plotBot - (v-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(plotBot-plotTop)
		}
		return plotBot - v/hi*(plotBot-plotTop)
	}
	for _, t := range p.ticks(lo, hi) {
		y := yOf(t)
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			plotLeft, plotRight, y, y, plotLeft-6, y+4, Num(t))
	}
	fmt.Fprintf(b, `<text x="16" y="%.0f" transform="rotate(-90 16 %.0f)" text-anchor="middle">%s</text>`+"\n",
		(plotTop+plotBot)/2, (plotTop+plotBot)/2, html.EscapeString(p.Unit))

	groupW := (plotRight - plotLeft) / float64(max(len(p.Groups), 1))
	barW := groupW * 0.8 / float64(max(len(p.Series), 1))
	for g, group := range p.Groups {
		gx := plotLeft + float64(g)*groupW + groupW*0.1
		for s := range p.Series {
			v := p.Values[g][s]
			if math.IsNaN(v) || v <= 0 {
				continue
			}
			y := yOf(v)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s %s</title></rect>`+"\n",
				gx+float64(s)*barW, y, barW-1, plotBot-y, palette[s%len(palette)],
				html.EscapeString(p.Series[s]), html.EscapeString(group), Num(v), html.EscapeString(p.Unit))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", gx+groupW*0.4, plotBot+18, html.EscapeString(group))
	}
	fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", plotLeft, plotRight, plotBot, plotBot)
}

// scale returns the axis range: whole decades for a log scale, zero to a
// round number above the largest value otherwise.
func (p Panel) scale() (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, row := range p.Values {
		for _, v := range row {
			if !math.IsNaN(v) && v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		return 1, 10
	}
	if p.Log {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	}
	step := niceStep(hi / 5)
	return 0, math.Ceil(hi/step) * step
}

// ticks returns the grid lines: each decade, or five round steps.
func (p Panel) ticks(lo, hi float64) []float64 {
	var t []float64
	if p.Log {
		for v := lo; v <= hi*1.0001; v *= 10 {
			t = append(t, v)
		}
		return t
	}
	step := niceStep(hi / 5)
	for v := 0.0; v <= hi*1.0001; v += step {
		t = append(t, v)
	}
	return t
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}
