package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/engine"
	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state/pebblestore"
)

// Reset names triggers, buckets and table sinks whose state the node drops
// when the app changed in a way their state cannot follow (docs/upgrades.md).
func Reset(names ...string) Opt { return func(c *config) { c.reset = append(c.reset, names...) } }

// ResetAll drops all of the app's state when it changed in a way the state
// cannot follow; the input is read again from the start.
func ResetAll() Opt { return func(c *config) { c.resetAll = true } }

// Plan says what starting app a on the data dir would do to its state,
// item by item (keep, reset, refused), without changing anything. A data
// dir without state, or whose state a wrote, has nothing to say (nil).
func Plan(a *app.App, dataDir string, opts ...Opt) ([]engine.PlanItem, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	dir := filepath.Join(dataDir, "state")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		return nil, fmt.Errorf("plan: %w (is a node running on it? stop it, or plan against a copy)", err)
	}
	defer st.Close()
	old, err := engine.StoredApp(st, a.Name)
	if err != nil || old == nil {
		return nil, err
	}
	if string(engine.Canonical(old)) == string(engine.Canonical(a)) {
		return nil, nil
	}
	return engine.Plan(old, a, cfg.reset, cfg.resetAll), nil
}

// checkGroupApps refuses to join a group whose members run an app this
// node's state-compatible plan would refuse (the same check as a restart
// with a changed file): a rolling upgrade with compatible changes may run
// two versions side by side for a while; any other mix may not. A member
// without HTTP, whose app cannot be asked, counts as different.
func checkGroupApps(ctx context.Context, rt *router, a *app.App) error {
	ms, err := rt.group.Members(ctx)
	if err != nil {
		return nil // the group's view comes with the join; nothing to compare yet
	}
	mine := engine.AppHash(a)
	var bad []string
	for _, m := range ms {
		url, hash := memberURL(m.ClientID)
		if hash == "" || hash == mine || m.ClientID == rt.self {
			continue
		}
		other, err := fetchApp(ctx, rt, url)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s runs app version %s (%v)", memberName(m.ClientID, url), hash, err))
			continue
		}
		for _, it := range engine.Plan(other, a, nil, false) {
			if it.Action == engine.Refused {
				bad = append(bad, fmt.Sprintf("%s runs app version %s, whose %s this node's file changes (%s: %s)", memberName(m.ClientID, url), hash, it.Item, it.Change, it.Why))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the group %s runs another version of app %s than this node (%s):\n  - %s\nrun the same app file on every node: stop them all and start them with the new file (docs/upgrades.md)",
			a.Kafka.Group, a.Name, mine, strings.Join(bad, "\n  - "))
	}
	return nil
}

func memberName(clientID, url string) string {
	if url != "" {
		return "node " + url
	}
	return "member " + clientID
}

// fetchApp asks a member for the app it runs (GET /v1/app).
func fetchApp(ctx context.Context, rt *router, url string) (*app.App, error) {
	if url == "" {
		return nil, errors.New("it has no HTTP address to ask its app of")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/app", nil)
	if err != nil {
		return nil, err
	}
	resp, err := rt.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/app: %s", resp.Status)
	}
	var other app.App
	if err := json.NewDecoder(resp.Body).Decode(&other); err != nil {
		return nil, err
	}
	return &other, nil
}

// PlanAgainst is Plan against a running node (its base URL): what a node
// started with app a would do beside it, or to the state it runs.
func PlanAgainst(ctx context.Context, url string, a *app.App, opts ...Opt) ([]engine.PlanItem, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	running, err := fetchApp(ctx, &router{client: &http.Client{Timeout: 10 * time.Second}}, strings.TrimSuffix(url, "/"))
	if err != nil {
		return nil, fmt.Errorf("plan: asking %s for its app: %w", url, err)
	}
	if string(engine.Canonical(running)) == string(engine.Canonical(a)) {
		return nil, nil
	}
	return engine.Plan(running, a, cfg.reset, cfg.resetAll), nil
}
