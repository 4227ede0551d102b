package testbroker

// PayloadSize is a payload size the transfer tests cover, with the count of
// messages sent at that size.
type PayloadSize struct {
	Name  string
	Size  int
	Count int
}

// PayloadSizes are the payload sizes of the transfer tests: empty, one
// byte, the largest and smallest payloads around the WebSocket 7-bit and
// 16-bit length encodings (the MQTT header adds a few bytes), and large
// ones that span many frames and reads.
var PayloadSizes = []PayloadSize{
	{
		Name:  "0B",
		Size:  0,
		Count: 20,
	},
	{
		Name:  "1B",
		Size:  1,
		Count: 20,
	},
	{
		Name:  "125B",
		Size:  125,
		Count: 20,
	},
	{
		Name:  "126B",
		Size:  126,
		Count: 20,
	},
	{
		Name:  "64KiB",
		Size:  64 << 10,
		Count: 10,
	},
	{
		Name:  "1MiB",
		Size:  1 << 20,
		Count: 3,
	},
}

// QoSLevels are the MQTT quality of service levels.
var QoSLevels = []byte{0, 1, 2}
