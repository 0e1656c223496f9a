package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pheromone-go/pheromone/engine/app"
	"github.com/pheromone-go/pheromone/state"
)

// Safe upgrades (docs/upgrades.md): the node keeps, with its state, the
// canonical form of the app that wrote it (key a/<app>/s). Started with a
// changed app file, it compares the two item by item: what its state can
// follow is kept; what would make its state wrong (a window of another
// size over objects held for the old one, a bucket keyed differently, a
// partition count) is refused, naming each item and why, unless the user
// resets exactly that state.
//
// The changelog carries the same record per partition (key a/<app>/p/<n>,
// written by each task's first commit after it takes the partition), so a
// node restoring a partition into an empty data dir compares the app that
// wrote that partition's state with its own, in the same way.

// Canonical is the app as the state sees it: the app file's settings
// without those that only say how to reach the cluster (brokers, TLS,
// SASL, the registry), as JSON.
func Canonical(a *app.App) []byte {
	c := *a
	c.Kafka.Brokers, c.Kafka.TLS, c.Kafka.SASL, c.SchemaRegistry = nil, nil, nil, nil
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // the app's types all marshal
	}
	return b
}

// AppHash is a short hash of Canonical: nodes of one group advertise it.
func AppHash(a *app.App) string {
	sum := sha256.Sum256(Canonical(a))
	return hex.EncodeToString(sum[:6])
}

// Plan item actions.
const (
	Keep    = "keep"    // the state follows the change
	Reset   = "reset"   // the item's state is dropped (asked for with Reset)
	Refused = "refused" // the state cannot follow; the node does not start
)

// PlanItem is what one change means for the state.
type PlanItem struct {
	Item   string `json:"item"`   // "trigger per_10s"
	Name   string `json:"name"`   // what --reset names: a trigger, bucket or table sink ("" for the whole app)
	Change string `json:"change"` // what changed
	Action string `json:"action"` // keep, reset or refused
	Why    string `json:"why"`
}

// Plan compares the app that wrote the state with the one starting, and
// applies resets: names to drop the state of (triggers, buckets, table
// sinks), or all of it.
func Plan(old, cur *app.App, resets []string, resetAll bool) []PlanItem {
	var items []PlanItem
	add := func(it PlanItem) {
		if it.Action == Refused && (resetAll || (it.Name != "" && slices.Contains(resets, it.Name))) {
			it.Action = Reset
		}
		items = append(items, it)
	}
	keep := func(item, change, why string) { add(PlanItem{Item: item, Change: change, Action: Keep, Why: why}) }
	refuse := func(item, name, change, why string) {
		add(PlanItem{Item: item, Name: name, Change: change, Action: Refused, Why: why})
	}
	if o, n := old.Partitions(), cur.Partitions(); o != n {
		refuse("the app", "", fmt.Sprintf("partitions %d → %d", o, n), "every piece of state belongs to a partition; the records would be read on other partitions than their state (--reset-all)")
	}
	// Sources: columns feed their buckets' stored objects.
	for _, s := range cur.Sources {
		os := findSource(old, s.Name)
		if os == nil {
			keep("source "+s.Name, "added", "a new source starts from the beginning of its topic")
			continue
		}
		for _, c := range os.Schema {
			i := slices.IndexFunc(s.Schema, func(n app.Column) bool { return n.Name == c.Name })
			switch {
			case i < 0:
				refuse("source "+s.Name, s.Bucket, "column "+c.Name+" removed", fmt.Sprintf("objects held in bucket %s have it; reset the bucket", s.Bucket))
			case s.Schema[i].Type != c.Type:
				refuse("source "+s.Name, s.Bucket, fmt.Sprintf("column %s: %s → %s", c.Name, c.Type, s.Schema[i].Type),
					fmt.Sprintf("objects held in bucket %s have the old type; reset the bucket", s.Bucket))
			}
		}
		for _, c := range s.Schema {
			if !slices.ContainsFunc(os.Schema, func(o app.Column) bool { return o.Name == c.Name }) {
				keep("source "+s.Name, "column "+c.Name+" added", "objects held already read as null in it")
			}
		}
		if os.Topic != s.Topic {
			keep("source "+s.Name, fmt.Sprintf("topic %s → %s", os.Topic, s.Topic), "the new topic is read from its beginning")
		}
	}
	for _, s := range old.Sources {
		if findSource(cur, s.Name) == nil {
			keep("source "+s.Name, "removed", "its offsets stay unused")
		}
	}
	// Buckets: their keys and partitioning shape the objects held.
	for _, b := range cur.Buckets {
		ob := findBucket(old, b.Name)
		if ob == nil {
			keep("bucket "+b.Name, "added", "")
			continue
		}
		for _, d := range diffFields(*ob, b, "Name", "MaxObjects", "MaxBytes", "MaxObjectsPerSession") {
			refuse("bucket "+b.Name, b.Name, d, "the objects it holds were keyed and placed by the old setting")
		}
		for _, d := range diffFields(*ob, b, "Name", "Key", "Session", "PartitionBy", "EventTime") {
			keep("bucket "+b.Name, d, "a limit applies from now on")
		}
	}
	for _, b := range old.Buckets {
		if findBucket(cur, b.Name) == nil {
			refuse("bucket "+b.Name, b.Name, "removed", "the objects it holds would stay in the state for good")
		}
	}
	// Triggers: what they hold is shaped by their primitive and windows.
	future := []string{"Name", "Function", "SessionTimeout", "OutOfOrderness", "AllowedLateness", "IdleTimeout", "MaxFuture", "LateBucket"}
	for _, t := range cur.Triggers {
		ot := findTrigger(old, t.Name)
		if ot == nil {
			keep("trigger "+t.Name, "added", "it holds the objects put from now on")
			continue
		}
		for _, d := range diffFields(*ot, t, append(future, "Incremental")...) {
			refuse("trigger "+t.Name, t.Name, d, "the objects and windows it holds were gathered for the old setting")
		}
		if d := foldChange(old, ot, cur, &t); d != "" {
			refuse("trigger "+t.Name, t.Name, d, "its open windows keep partial aggregates of the old function, not objects (docs/triggers.md)")
		}
		var all []string
		for i := 0; i < reflect.TypeOf(t).NumField(); i++ {
			if f := reflect.TypeOf(t).Field(i); f.IsExported() && !slices.Contains(future, f.Name) {
				all = append(all, f.Name)
			}
		}
		for _, d := range diffFields(*ot, t, append(all, "Name")...) {
			keep("trigger "+t.Name, d, "it applies from the next firing")
		}
	}
	for _, t := range old.Triggers {
		if findTrigger(cur, t.Name) == nil {
			refuse("trigger "+t.Name, t.Name, "removed", "the objects and windows it holds would never fire")
		}
	}
	// Functions hold no state; table sinks hold rows by their key.
	for _, f := range cur.Functions {
		of := findFunction(old, f.Name)
		switch {
		case of == nil:
			keep("function "+f.Name, "added", "")
		case show(*of) != show(f):
			keep("function "+f.Name, "changed", "functions hold no state: the next firing runs the new one")
		}
	}
	for _, s := range cur.Sinks {
		os := findSink(old, s.Name)
		switch {
		case os == nil:
			keep("sink "+s.Name, "added", "")
		case s.Kind == "table" && os.Kind == "table" && os.Key != s.Key:
			refuse("sink "+s.Name, s.Name, fmt.Sprintf("key %s → %s", os.Key, s.Key), "its rows are kept by the old key")
		case show(*os) != show(s):
			keep("sink "+s.Name, "changed", "outputs from now on follow it")
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return rank(items[i].Action) < rank(items[j].Action) })
	return items
}

// foldChange says what changed in what a window trigger keeps as partial
// aggregates (it folds when it may and fires a built-in aggregate; a
// session window that folds no float sums is counted as folding too): its
// incremental setting, its function, or that function's groups and
// aggregates. "" when nothing did.
func foldChange(old *app.App, ot *app.Trigger, cur *app.App, t *app.Trigger) string {
	sig := func(a *app.App, t *app.Trigger) (bool, string) {
		f := findFunction(a, t.Function)
		if (t.Primitive != "by_time" && t.Primitive != "by_batch_size") || f == nil || f.Kind != "aggregate" {
			return false, ""
		}
		var ops []string
		for _, ag := range f.Aggregates {
			op := ag.Name + "=" + ag.Op + "(" + ag.Column + ")"
			if ag.K > 0 {
				op += fmt.Sprintf("[%d]", ag.K)
			}
			ops = append(ops, op)
		}
		folds := t.IncrementalAllowed() && (t.Primitive == "by_time" || t.SessionTimeout == "")
		return folds, fmt.Sprintf("%s by (%s): %s", t.Function, strings.Join(f.GroupBy, ", "), strings.Join(ops, ", "))
	}
	of, os := sig(old, ot)
	nf, ns := sig(cur, t)
	switch {
	case of != nf:
		return fmt.Sprintf("incremental: %v → %v", of, nf)
	case of && os != ns:
		return fmt.Sprintf("partial aggregates: %s → %s", os, ns)
	}
	return ""
}

func rank(action string) int {
	return map[string]int{Refused: 0, Reset: 1, Keep: 2}[action]
}

func findSource(a *app.App, name string) *app.Source {
	for i := range a.Sources {
		if a.Sources[i].Name == name {
			return &a.Sources[i]
		}
	}
	return nil
}

// The finders below work on an app read back from the state too (its
// indexes are not rebuilt).

func findBucket(a *app.App, name string) *app.Bucket {
	for i := range a.Buckets {
		if a.Buckets[i].Name == name {
			return &a.Buckets[i]
		}
	}
	return nil
}

func findFunction(a *app.App, name string) *app.Function {
	for i := range a.Functions {
		if a.Functions[i].Name == name {
			return &a.Functions[i]
		}
	}
	return nil
}

func findSink(a *app.App, name string) *app.Sink {
	for i := range a.Sinks {
		if a.Sinks[i].Name == name {
			return &a.Sinks[i]
		}
	}
	return nil
}

func findTrigger(a *app.App, name string) *app.Trigger {
	for i := range a.Triggers {
		if a.Triggers[i].Name == name {
			return &a.Triggers[i]
		}
	}
	return nil
}

// diffFields describes the exported fields of two structs of one type
// that differ, but those named in skip, by their YAML keys.
func diffFields(old, cur any, skip ...string) []string {
	ov, cv := reflect.ValueOf(old), reflect.ValueOf(cur)
	var out []string
	for i := 0; i < ov.NumField(); i++ {
		f := ov.Type().Field(i)
		if !f.IsExported() || slices.Contains(skip, f.Name) {
			continue
		}
		if a, b := ov.Field(i).Interface(), cv.Field(i).Interface(); !reflect.DeepEqual(a, b) {
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			out = append(out, fmt.Sprintf("%s: %s → %s", key, show(a), show(b)))
		}
	}
	return out
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if s := string(b); s != `""` && s != "null" {
		return s
	}
	return "(none)"
}

// ErrUpgrade is a changed app whose state the node cannot keep.
var ErrUpgrade = errors.New("the app changed in ways its state cannot follow")

// UpgradeError lists the refused items.
type UpgradeError struct {
	Items []PlanItem
	// Partition is set when the state was restored from the changelog:
	// that partition's state was written by another version of the app.
	Partition *int32
}

func (e *UpgradeError) Error() string {
	var b strings.Builder
	b.WriteString("engine: " + ErrUpgrade.Error())
	if e.Partition != nil {
		fmt.Fprintf(&b, " (partition %d's state, restored from the changelog, was written by another version of the app)", *e.Partition)
	}
	b.WriteString(":")
	for _, it := range e.Items {
		fmt.Fprintf(&b, "\n  - %s: %s: %s", it.Item, it.Change, it.Why)
		if it.Name != "" {
			fmt.Fprintf(&b, " (--reset %s drops its state)", it.Name)
		}
	}
	b.WriteString("\nstart with the app the state was written by, or reset what is listed (--reset NAME, or --reset-all); `pheromone plan` shows every change")
	return b.String()
}

func (e *UpgradeError) Unwrap() error { return ErrUpgrade }

func specKey(app string) []byte { return append(appPrefix(app), 's') }

// StoredApp returns the app that wrote st's state (nil for a store without
// one: new, or written before apps were recorded).
func StoredApp(st state.Reader, name string) (*app.App, error) {
	v, err := st.Get(specKey(name))
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a app.App
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("engine: the recorded app: %w", err)
	}
	return &a, nil
}

// upgrade compares the recorded app with o.App; it refuses what the state
// cannot follow, drops the state asked for (o.Reset, o.ResetAll; source
// offsets go back to 0) and records o.App. It returns the keys it reset
// (for the changelog).
func upgrade(o Options) ([][]byte, error) {
	a := o.App
	old, err := StoredApp(o.Store, a.Name)
	if err != nil {
		return nil, err
	}
	var deleted, stale [][]byte
	if old != nil && string(Canonical(old)) != string(Canonical(a)) {
		plan := Plan(old, a, o.Reset, o.ResetAll)
		var refused []PlanItem
		for _, it := range plan {
			if it.Action == Refused {
				refused = append(refused, it)
			}
		}
		if len(refused) > 0 {
			return nil, &UpgradeError{Items: refused}
		}
		if deleted, err = dropState(o, old, plan); err != nil {
			return nil, err
		}
		// Each partition records the new app with its next first commit
		// (checkRestored finds none and writes it).
		if err := o.Store.Scan(append(appPrefix(a.Name), 'p', '/'), func(k, _ []byte) error {
			stale = append(stale, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return nil, err
		}
		for _, it := range plan {
			if it.Action != Keep || it.Change != "added" {
				o.Logger.Info("the app changed", "item", it.Item, "change", it.Change, "state", it.Action, "why", it.Why)
			}
		}
	}
	b := o.Store.NewBatch()
	defer b.Close()
	for _, k := range deleted {
		if isOffsetKey(a.Name, k) {
			// A source offset goes back to the start (not away: without
			// one the source would resume at the group's offset).
			b.Set(k, make([]byte, 8))
			continue
		}
		b.Delete(k)
	}
	for _, k := range stale {
		b.Delete(k)
	}
	b.Set(specKey(a.Name), Canonical(a))
	return deleted, b.Commit(true)
}

// dropState lists the keys of the state the plan resets.
func dropState(o Options, old *app.App, plan []PlanItem) ([][]byte, error) {
	name := o.App.Name
	var keys [][]byte
	collect := func(prefix []byte, keep func(k []byte) bool) error {
		return o.Store.Scan(prefix, func(k, _ []byte) error {
			if keep == nil || keep(k) {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		})
	}
	for _, it := range plan {
		if it.Action != Reset {
			continue
		}
		if it.Name == "" || o.ResetAll {
			// Everything but the format version: offsets too, so the input
			// is read again from the start.
			err := collect(appPrefix(name), func(k []byte) bool {
				return string(k) != string(formatKey(name)) && string(k) != string(specKey(name))
			})
			return keys, err
		}
	}
	for _, it := range plan {
		if it.Action != Reset {
			continue
		}
		if b := findBucket(old, it.Name); b != nil {
			if err := collect(append(appPrefix(name), "b/"+b.Name+"\x00"...), nil); err != nil {
				return nil, err
			}
		}
		if t := findTrigger(old, it.Name); t != nil {
			suffix := "/t/" + t.Name
			if err := collect(append(appPrefix(name), "b/"+t.Bucket+"\x00"...), func(k []byte) bool {
				return strings.HasSuffix(string(k), suffix) || strings.HasSuffix(string(k), "/f/"+t.Name) || strings.Contains(string(k), "/w/"+t.Name+"\x00")
			}); err != nil {
				return nil, err
			}
		}
		if s := findSink(old, it.Name); s != nil && s.Kind == "table" {
			if err := collect(append(appPrefix(name), "t/"+s.Name+"\x00"...), nil); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// isOffsetKey reports whether key is a source offset of app.
func isOffsetKey(app string, key []byte) bool {
	rest := key[len(appPrefix(app)):]
	return len(rest) > 1 && rest[0] == 'o' && rest[1] == '/'
}

// keyPartition is the partition a state key belongs to, if any.
func keyPartition(app string, key []byte) (int32, bool) {
	rest := key[len(appPrefix(app)):]
	if len(rest) < 2 {
		return 0, false
	}
	switch rest[0] {
	case 'x', 'k', 'p':
		rest = rest[2:]
	case 'o', 'b', 't':
		i := strings.IndexByte(string(rest), 0)
		if i < 0 {
			return 0, false
		}
		rest = rest[i+1:]
	default:
		return 0, false
	}
	if len(rest) < 4 {
		return 0, false
	}
	return int32(uint32(rest[0])<<24 | uint32(rest[1])<<16 | uint32(rest[2])<<8 | uint32(rest[3])), true
}

// logResets writes the reset state to each partition's changelog (a
// tombstone, or a source offset's 0) with the partition's app record,
// closed by a marker, so a node that restores from the changelog drops the
// same state.
func logResets(o Options, deleted [][]byte) error {
	if o.ChangelogTopic == "" || len(deleted) == 0 {
		return nil
	}
	byPart := map[int32][][]byte{}
	for _, k := range deleted {
		p, ok := keyPartition(o.App.Name, k)
		if rest := k[len(appPrefix(o.App.Name)):]; !ok || rest[0] == 'k' || rest[0] == 'x' || rest[0] == 'p' {
			continue // local only, or a record written below
		}
		byPart[p] = append(byPart[p], k)
	}
	for p, keys := range byPart {
		w, err := o.Writers(p)
		if err != nil {
			return err
		}
		a := newAcks()
		seq := uint64(0)
		if v, err := o.Store.Get(markerKey(o.App.Name, p)); err == nil && len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		keys = append(keys, partAppKey(o.App.Name, p), nil)
		for _, k := range keys {
			r := &OutRecord{Topic: o.ChangelogTopic, Key: k, Partition: p, ToPartition: true}
			switch v, err := o.Store.Get(k); {
			case k == nil:
				r.Key, r.Value = markerKey(o.App.Name, p), markerValue(seq)
			case err == nil:
				r.Value = append([]byte{changelogSet}, v...)
			case !errors.Is(err, state.ErrNotFound):
				w.Close()
				return err
			}
			a.wg.Add(1)
			w.Produce(r, a.doneFn)
		}
		a.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = w.Commit(ctx)
		cancel()
		w.Close()
		if err = errors.Join(a.err, err); err != nil {
			return fmt.Errorf("engine: writing the reset state's tombstones to the changelog: %w", err)
		}
	}
	return nil
}

// partAppKey holds the canonical app that last wrote partition part's
// state; it goes to the changelog with that state.
func partAppKey(app string, part int32) []byte {
	return binary.BigEndian.AppendUint32(append(appPrefix(app), 'p', '/'), uint32(part))
}

// checkRestored compares the app that wrote partition part's state (its
// record came back with the state from the changelog, or is local) with
// the running one, as a restart compares the recorded app: what the state
// cannot follow is refused; what o.Reset names is dropped for this
// partition. It returns the keys the task's first commit writes to the
// changelog: those dropped and the partition's new app record.
func (n *Node) checkRestored(part int32) ([][]byte, error) {
	o := n.o
	name := o.App.Name
	key := partAppKey(name, part)
	cur := Canonical(o.App)
	v, err := o.Store.Get(key)
	switch {
	case err == nil && string(v) == string(cur):
		return nil, nil
	case err != nil && !errors.Is(err, state.ErrNotFound):
		return nil, err
	}
	var keys [][]byte
	if err == nil {
		var old app.App
		if err := json.Unmarshal(v, &old); err != nil {
			return nil, fmt.Errorf("engine: partition %d's recorded app: %w", part, err)
		}
		if string(Canonical(&old)) != string(cur) {
			plan := Plan(&old, o.App, o.Reset, o.ResetAll)
			var refused []PlanItem
			for _, it := range plan {
				if it.Action == Refused {
					refused = append(refused, it)
				}
			}
			if len(refused) > 0 {
				return nil, &UpgradeError{Items: refused, Partition: &part}
			}
			all, err := dropState(o, &old, plan)
			if err != nil {
				return nil, err
			}
			for _, k := range all {
				rest := k[len(appPrefix(name)):]
				if p, ok := keyPartition(name, k); ok && p == part && rest[0] != 'k' && rest[0] != 'x' && rest[0] != 'p' {
					keys = append(keys, k)
				}
			}
			for _, it := range plan {
				if it.Action == Reset {
					n.log.Info("state restored from the changelog reset", "partition", part, "item", it.Item, "change", it.Change, "why", it.Why)
				}
			}
		}
	}
	b := o.Store.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if isOffsetKey(name, k) {
			b.Set(k, make([]byte, 8))
		} else {
			b.Delete(k)
		}
	}
	b.Set(key, cur)
	return append(keys, key), b.Commit(!o.NoSync)
}
