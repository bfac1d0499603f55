// Command pam_loadgen is the PAM benchmark's load generator: a closed loop of -clients concurrent
// clients, each on its own keep-alive connection, asking for lobbies back to back for -warmup and then
// -duration (with -prime, after asking for every player's lobby once). Every client rotates through the
// players of -players (lines "player_id<TAB>token"). It writes "started" to stderr when the warm-up
// begins and, at the end, prints one JSON object: requests/s over the measured window and exact latency percentiles over every
// request that started and ended inside it, the status counts, and how many lobbies said "degraded".
//
//	pam_loadgen -url http://127.0.0.1:8080 -players players.tsv -clients 50 -duration 10s -warmup 2s
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type player struct {
	path          string
	authorization string
}

type clientStats struct {
	latencies []time.Duration
	statuses  map[int]int
	errors    int
	degraded  int
}

type summary struct {
	Clients   int            `json:"clients"`
	Requests  int            `json:"requests"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"requests_per_second"`
	P50       float64        `json:"p50_ms"`
	P90       float64        `json:"p90_ms"`
	P99       float64        `json:"p99_ms"`
	Max       float64        `json:"max_ms"`
	Statuses  map[string]int `json:"statuses"`
	Errors    int            `json:"errors"`
	Degraded  int            `json:"degraded"`
}

var degradedMarker = []byte(`"degraded":true`)

func readPlayers(path string) ([]player, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var players []player
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		id, token, ok := strings.Cut(strings.TrimSpace(scanner.Text()), "\t")
		if !ok || id == "" || token == "" {
			continue
		}
		players = append(players, player{path: "/v1/players/" + id + "/lobby", authorization: "Bearer " + token})
	}
	if len(players) == 0 {
		return nil, fmt.Errorf("%s lists no players", path)
	}
	return players, scanner.Err()
}

// topLevelDegraded reads the lobby's own "degraded" flag: it comes before the sections.
func topLevelDegraded(body []byte) bool {
	head := body
	if index := bytes.Index(body, []byte(`"sections"`)); index >= 0 {
		head = body[:index]
	}
	return bytes.Contains(head, degradedMarker)
}

func percentile(sorted []time.Duration, fraction float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest latency at or above which lies the given fraction.
	index := int(math.Ceil(fraction*float64(len(sorted)))) - 1
	if index < 0 {
		index = 0
	}
	return float64(sorted[index]) / float64(time.Millisecond)
}

// primeAll asks for every player's lobby once, spread over the clients, answers ignored.
func primeAll(client *http.Client, base string, players []player, clients int) {
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for next := c; next < len(players); next += clients {
				request, _ := http.NewRequest(http.MethodGet, base+players[next].path, nil)
				request.Header["Authorization"] = []string{players[next].authorization}
				if response, err := client.Do(request); err == nil {
					_, _ = io.Copy(io.Discard, response.Body)
					response.Body.Close()
				}
			}
		}(c)
	}
	wg.Wait()
}

func main() {
	base := flag.String("url", "", "PAM's base URL, e.g. http://127.0.0.1:8080")
	playersFile := flag.String("players", "", "file of lines player_id<TAB>token")
	clients := flag.Int("clients", 50, "concurrent clients (one connection each)")
	duration := flag.Duration("duration", 10*time.Second, "measured window")
	warmup := flag.Duration("warmup", 2*time.Second, "load before the measured window (not counted)")
	timeout := flag.Duration("timeout", 5*time.Second, "a request taking longer counts as an error")
	prime := flag.Bool("prime", false, "before the warm-up, ask for every player's lobby once (PAM caches verified tokens)")
	flag.Parse()
	if *base == "" || *playersFile == "" || *clients < 1 {
		log.Fatal("-url, -players and -clients >= 1 are required")
	}
	players, err := readPlayers(*playersFile)
	if err != nil {
		log.Fatal(err)
	}
	transport := &http.Transport{
		MaxIdleConns:        *clients,
		MaxIdleConnsPerHost: *clients,
		MaxConnsPerHost:     *clients,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	if *prime {
		primeAll(client, *base, players, *clients)
	}
	begin := time.Now()
	fmt.Fprintln(os.Stderr, "started")
	measureFrom := begin.Add(*warmup)
	measureTo := measureFrom.Add(*duration)
	stats := make([]clientStats, *clients)
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			mine := &stats[c]
			mine.statuses = map[int]int{}
			mine.latencies = make([]time.Duration, 0, 4096)
			next := c
			buffer := make([]byte, 0, 64*1024)
			for {
				started := time.Now()
				if !started.Before(measureTo) {
					return
				}
				who := players[next%len(players)]
				next += *clients
				request, _ := http.NewRequest(http.MethodGet, *base+who.path, nil)
				request.Header["Authorization"] = []string{who.authorization}
				response, err := client.Do(request)
				var body []byte
				status := 0
				if err == nil {
					buffer = buffer[:0]
					out := bytes.NewBuffer(buffer)
					_, err = io.Copy(out, response.Body)
					response.Body.Close()
					body = out.Bytes()
					status = response.StatusCode
				}
				ended := time.Now()
				if started.Before(measureFrom) || ended.After(measureTo) {
					continue
				}
				if err != nil {
					mine.errors++
					continue
				}
				mine.statuses[status]++
				if status == http.StatusOK && topLevelDegraded(body) {
					mine.degraded++
				}
				mine.latencies = append(mine.latencies, ended.Sub(started))
			}
		}(c)
	}
	wg.Wait()
	var all []time.Duration
	result := summary{Clients: *clients, Statuses: map[string]int{}, Seconds: duration.Seconds()}
	for _, mine := range stats {
		all = append(all, mine.latencies...)
		for status, count := range mine.statuses {
			result.Statuses[fmt.Sprint(status)] += count
		}
		result.Errors += mine.errors
		result.Degraded += mine.degraded
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	result.Requests = len(all)
	result.PerSecond = float64(len(all)) / duration.Seconds()
	result.P50 = percentile(all, 0.50)
	result.P90 = percentile(all, 0.90)
	result.P99 = percentile(all, 0.99)
	if len(all) > 0 {
		result.Max = float64(all[len(all)-1]) / float64(time.Millisecond)
	}
	encoded, _ := json.Marshal(result)
	fmt.Println(string(encoded))
}
