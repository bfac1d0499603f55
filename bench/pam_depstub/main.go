// Command pam_depstub stands in for the lobby's AWS dependencies in the PAM benchmark: DynamoDB GetItem
// (JSON 1.0, the similar-games row PAM reads) and Personalize runtime GetRecommendations (rest-json,
// POST /recommendations), each answered with fixed, plausible content after a fixed delay.
//
// Game ids come from the catalog file PAM serves (games.json: {"games": [{"game_id": ...}]} or a bare
// list), so every recommended game is one PAM can show. Requests are not authenticated (PAM signs them;
// checking signatures is not what is measured). GET /stats answers the request counts as JSON.
//
//	pam_depstub -listen 127.0.0.1:0 -catalog games.json -delay 20ms -addr-file stub.addr
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

const getItemTarget = "DynamoDB_20120810.GetItem"

// similarPerGame is how many similar games a DynamoDB row lists (batch similar writes 25).
const similarPerGame = 25

type stub struct {
	delay      time.Duration
	gameIDs    []string
	similar    map[string][]byte // GetItem answer per game id
	getItem    atomic.Int64
	recommend  atomic.Int64
	unknown    atomic.Int64
	recCounter atomic.Int64
}

type catalogEntry struct {
	GameID string `json:"game_id"`
}

func readCatalog(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var entries []catalogEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		var document struct {
			Games []catalogEntry `json:"games"`
		}
		if err := json.Unmarshal(data, &document); err != nil {
			return nil, fmt.Errorf("%s is not a catalog: %w", path, err)
		}
		entries = document.Games
	}
	ids := make([]string, 0, len(entries))
	for _, entry := range entries {
		if entry.GameID != "" {
			ids = append(ids, entry.GameID)
		}
	}
	if len(ids) < similarPerGame+1 {
		return nil, fmt.Errorf("%s holds %d games, at least %d are needed", path, len(ids), similarPerGame+1)
	}
	return ids, nil
}

// similarRows pre-encodes each game's GetItem answer: the next games in catalog order, by a stride.
func similarRows(ids []string) map[string][]byte {
	type attr map[string]any
	rows := make(map[string][]byte, len(ids))
	for index, id := range ids {
		list := make([]attr, 0, similarPerGame)
		for k := 1; k <= similarPerGame; k++ {
			list = append(list, attr{"S": ids[(index+k*7)%len(ids)]})
		}
		item := map[string]any{
			"Item": map[string]attr{
				"gameId":       {"S": id},
				"similar":      {"L": list},
				"modelVersion": {"S": "bench-model-1"},
				"updatedAt":    {"S": "2026-01-01T00:00:00Z"},
			},
		}
		encoded, err := json.Marshal(item)
		if err != nil {
			log.Fatal(err)
		}
		rows[id] = encoded
	}
	return rows
}

func (s *stub) wait() {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
}

func writeJSON(w http.ResponseWriter, contentType string, body []byte) {
	header := w.Header()
	header["Content-Type"] = []string{contentType}
	header["Content-Length"] = []string{strconv.Itoa(len(body))}
	_, _ = w.Write(body)
}

func (s *stub) getItemAnswer(w http.ResponseWriter, body []byte) {
	var request struct {
		Key map[string]map[string]string `json:"Key"`
	}
	if err := json.Unmarshal(body, &request); err != nil {
		http.Error(w, `{"__type":"com.amazon.coral.validate#ValidationException"}`, http.StatusBadRequest)
		return
	}
	var id string
	for _, value := range request.Key {
		id = value["S"]
	}
	s.getItem.Add(1)
	s.wait()
	row, ok := s.similar[id]
	if !ok {
		row = []byte("{}")
	}
	writeJSON(w, "application/x-amz-json-1.0", row)
}

func (s *stub) recommendations(w http.ResponseWriter, body []byte) {
	var request struct {
		CampaignArn string `json:"campaignArn"`
		UserID      string `json:"userId"`
		NumResults  int    `json:"numResults"`
	}
	if err := json.Unmarshal(body, &request); err != nil {
		http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	count := request.NumResults
	if count <= 0 || count > 500 {
		count = 25
	}
	if count > len(s.gameIDs) {
		count = len(s.gameIDs)
	}
	// Each campaign and user gets its own rotation of the catalog (for-you differs per player).
	hash := fnv.New32a()
	_, _ = io.WriteString(hash, request.CampaignArn)
	_, _ = io.WriteString(hash, request.UserID)
	start := int(hash.Sum32() % uint32(len(s.gameIDs)))
	s.recommend.Add(1)
	answer := make([]byte, 0, 64+count*40)
	answer = append(answer, `{"itemList":[`...)
	for k := 0; k < count; k++ {
		if k > 0 {
			answer = append(answer, ',')
		}
		answer = append(answer, `{"itemId":"`...)
		answer = append(answer, s.gameIDs[(start+k*3)%len(s.gameIDs)]...)
		answer = append(answer, `","score":0.`...)
		answer = strconv.AppendInt(answer, int64(9000-k), 10)
		answer = append(answer, '}')
	}
	answer = append(answer, `],"recommendationId":"RID-bench-`...)
	answer = strconv.AppendInt(answer, s.recCounter.Add(1), 10)
	answer = append(answer, `"}`...)
	s.wait()
	writeJSON(w, "application/json", answer)
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/stats" {
		stats := map[string]int64{
			"getItem": s.getItem.Load(), "getRecommendations": s.recommend.Load(), "unknown": s.unknown.Load(),
		}
		encoded, _ := json.Marshal(stats)
		writeJSON(w, "application/json", encoded)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	switch {
	case r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") == getItemTarget:
		s.getItemAnswer(w, body)
	case r.Method == http.MethodPost && r.URL.Path == "/recommendations":
		s.recommendations(w, body)
	default:
		s.unknown.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"UnknownOperationException","message":"not stubbed"}`)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	catalog := flag.String("catalog", "", "the games.json PAM serves (game ids to recommend)")
	delay := flag.Duration("delay", 0, "answer every call after this long (e.g. 20ms)")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once listening")
	flag.Parse()
	if *catalog == "" {
		log.Fatal("-catalog is required")
	}
	ids, err := readCatalog(*catalog)
	if err != nil {
		log.Fatal(err)
	}
	s := &stub{delay: *delay, gameIDs: ids, similar: similarRows(ids)}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(listener.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	server := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	log.Fatal(server.Serve(listener))
}
