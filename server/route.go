package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pheromone-go/pheromone/connectors/kafka"
	"github.com/pheromone-go/pheromone/engine"
)

// Query routing: every node advertises its HTTP address in its consumer
// group client id ("pheromone@http://host:port"). A query for a key the
// node does not own is forwarded to the member the group assigned the key's
// partition to; a query without a key is answered by every member and the
// partitions merged; a table query by key the owner does not hold is also
// asked of every member (a table's key need not be its partitioning key). A
// request forwarded to an owner carries routed=1 and one asked of every
// member routed=all; neither is forwarded again (an owner may still ask the
// others for a table key it lacks).

const memberPrefix = "pheromone@"

// memberID is the client id a node joins the group with: its URL and the
// hash of the app it runs ("pheromone@http://host:port#<hash>").
func memberID(advertise, httpAddr, hash string) string {
	return memberBase(advertise, httpAddr) + "#" + hash
}

// memberURL splits a member's client id into its URL ("" for a node
// without HTTP) and its app hash ("" for a node before hashes).
func memberURL(clientID string) (url, hash string) {
	id, hash, _ := strings.Cut(clientID, "#")
	if u, ok := strings.CutPrefix(id, memberPrefix); ok {
		return u, hash
	}
	return "", hash
}

func memberBase(advertise, httpAddr string) string {
	if advertise == "" {
		if httpAddr == "" {
			// No HTTP API: unique, but not a routing target.
			h, _ := os.Hostname()
			return fmt.Sprintf("pheromone-%s-%d", h, os.Getpid())
		}
		host, port, err := net.SplitHostPort(httpAddr)
		if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			if h, err := os.Hostname(); err == nil {
				httpAddr = net.JoinHostPort(h, port)
			}
		}
		advertise = "http://" + httpAddr
	}
	return memberPrefix + strings.TrimSuffix(advertise, "/")
}

// router finds which node owns a partition.
type router struct {
	group  *kafka.GroupDescriber // its lead topic's assignment is the partition ownership
	self   string
	client *http.Client

	mu      sync.Mutex
	at      time.Time
	members []kafka.Member
}

func (rt *router) lookup(ctx context.Context) ([]kafka.Member, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if time.Since(rt.at) < time.Second && rt.members != nil {
		return rt.members, nil
	}
	ms, err := rt.group.Members(ctx)
	if err != nil {
		return nil, err
	}
	rt.members, rt.at = ms, time.Now()
	return ms, nil
}

// owner returns the base URL of the node that owns part.
func (rt *router) owner(ctx context.Context, part int32) (string, error) {
	ms, err := rt.lookup(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		for _, p := range m.Partitions {
			if u, _ := memberURL(m.ClientID); p == part && u != "" {
				return u, nil
			}
		}
	}
	return "", fmt.Errorf("no node owns partition %d right now (a rebalance may be in progress; retry)", part)
}

// peers returns the base URLs of the other members.
func (rt *router) peers(ctx context.Context) ([]string, error) {
	ms, err := rt.lookup(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if u, _ := memberURL(m.ClientID); u != "" && m.ClientID != rt.self {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out, nil
}

// forward proxies r to base and copies the answer to w.
func (rt *router) forward(w http.ResponseWriter, r *http.Request, base string) {
	resp, err := rt.get(r, base, routedToOwner)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set("Pheromone-Served-By", base)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// The routed query parameter of a forwarded request: to the owner of the
// partition a key hashes to, or to every node of a fan-out.
const (
	routedToOwner = "1"
	routedFanOut  = "all"
)

func (rt *router) get(r *http.Request, base, routed string) (*http.Response, error) {
	q := r.URL.Query()
	q.Set("routed", routed)
	u := base + r.URL.Path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if a := r.Header.Get("Accept"); a != "" {
		req.Header.Set("Accept", a)
	}
	resp, err := rt.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("forwarding to %s: %w", base, err)
	}
	return resp, nil
}

// gather asks every peer for r (JSON, marked routed=all so no peer asks
// further) and decodes each answer into a T.
func gather[T any](rt *router, r *http.Request) ([]T, error) {
	peers, err := rt.peers(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]T, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rt.get(r, p, routedFanOut)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				errs[i] = fmt.Errorf("%s: %s: %s", p, resp.Status, strings.TrimSpace(string(b)))
				return
			}
			errs[i] = json.NewDecoder(resp.Body).Decode(&out[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// route decides where a query goes: it returns the partition the query is
// about (from ?partition=, else from ?key= hashed like the data), and
// handled=true when it forwarded the request to the owner.
func (h *apiHandler) route(w http.ResponseWriter, r *http.Request) (part int32, one, handled bool) {
	q := r.URL.Query()
	switch {
	case q.Get("partition") != "":
		p, err := strconv.Atoi(q.Get("partition"))
		if err != nil || p < 0 || p >= h.app.Partitions() {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("partition %q: want 0..%d", q.Get("partition"), h.app.Partitions()-1)})
			return 0, false, true
		}
		part, one = int32(p), true
	case q.Get("key") != "":
		part, one = engine.PartitionOf([]byte(q.Get("key")), h.app.Partitions()), true
	}
	if h.router == nil || q.Get("routed") != "" || !one || h.node.Owns(part) {
		return part, one, false
	}
	base, err := h.router.owner(r.Context(), part)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return part, one, true
	}
	h.router.forward(w, r, base)
	return part, one, true
}

// fanOut reports whether a query without a key should also ask the peers.
func (h *apiHandler) fanOut(r *http.Request, one bool) bool {
	return h.router != nil && !one && r.URL.Query().Get("routed") == "" && !wantsArrow(r)
}

// standbyPartitions picks the partitions node self keeps standby replicas
// of: members sorted by client id form a ring, and the replicas of a
// partition are the `replicas` members after its owner.
func standbyPartitions(members []kafka.Member, self string, replicas int) []int32 {
	var ids []string
	owners := map[string][]int32{}
	for _, m := range members {
		if _, dup := owners[m.ClientID]; !dup {
			ids = append(ids, m.ClientID)
		}
		owners[m.ClientID] = append(owners[m.ClientID], m.Partitions...)
	}
	sort.Strings(ids)
	var out []int32
	for i, id := range ids {
		for k := 1; k <= replicas && k < len(ids); k++ {
			if ids[(i+k)%len(ids)] == self {
				out = append(out, owners[id]...)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// followStandbys keeps the node's standby replicas in line with the
// group's assignment until ctx ends.
func followStandbys(ctx context.Context, rt *router, node *engine.Node, replicas int) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if ms, err := rt.lookup(ctx); err == nil {
			node.SetStandbys(standbyPartitions(ms, rt.self, replicas))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
