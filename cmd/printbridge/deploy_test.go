package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/edge"
	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/hooks"
	"github.com/printbridge/printbridge/printer/virtual"
)

// repoRoot is the repository root as seen from this package's directory.
var repoRoot = filepath.Join("..", "..")

// publishedImages are the third-party images the deployment files may
// name. They were checked by hand on Docker Hub, because this test cannot
// reach a registry; add a new image here only after checking it there.
var publishedImages = map[string]bool{
	"eclipse-mosquitto:2":     true,
	"nats:2.11":               true,
	"prom/prometheus:v2.53.0": true,
	"grafana/grafana:11.1.0":  true,
	"golang:1.26-bookworm":    true,
	"debian:bookworm-slim":    true,
}

type composeService struct {
	Image      string    `yaml:"image"`
	Build      any       `yaml:"build"`
	Entrypoint []string  `yaml:"entrypoint"`
	Command    yaml.Node `yaml:"command"`
	Volumes    []string  `yaml:"volumes"`
	DependsOn  []string  `yaml:"depends_on"`
	Ports      []string  `yaml:"ports"`
	Restart    string    `yaml:"restart"`
	Devices    []string  `yaml:"devices"`
	GroupAdd   []string  `yaml:"group_add"`
	Environ    any       `yaml:"environment"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	return f
}

func commandWords(t *testing.T, n yaml.Node) []string {
	t.Helper()
	var words []string
	if n.Kind == 0 {
		return nil
	}
	if err := n.Decode(&words); err != nil {
		t.Fatalf("compose command at line %d is not a list of strings: %v", n.Line, err)
	}
	return words
}

func TestComposeFileReferences(t *testing.T) {
	f := loadCompose(t)
	for _, want := range []string{"mosquitto", "nats", "edge", "worker", "prometheus", "grafana"} {
		if _, ok := f.Services[want]; !ok {
			t.Errorf("docker-compose.yml has no %s service", want)
		}
	}
	built := map[string]bool{}
	for _, s := range f.Services {
		if s.Build != nil && s.Image != "" {
			built[s.Image] = true
		}
	}
	for name, s := range f.Services {
		switch {
		case s.Image == "" && s.Build == nil:
			t.Errorf("service %s has neither image nor build", name)
		case s.Build != nil:
			if _, err := os.Stat(filepath.Join(repoRoot, "Dockerfile")); err != nil {
				t.Errorf("service %s builds from the repository, but: %v", name, err)
			}
		case built[s.Image]:
		case !publishedImages[s.Image]:
			t.Errorf("service %s uses image %q, which is neither built here nor a known published image", name, s.Image)
		}
		if !slices.Contains([]string{"", "no", "always", "on-failure", "unless-stopped"}, s.Restart) {
			t.Errorf("service %s has restart %q, which compose does not know", name, s.Restart)
		}
		for _, dep := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("service %s volume %q has no target", name, v)
				continue
			}
			src := parts[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("service %s mounts %s, which is not in the repository: %v", name, src, err)
				}
			} else if _, ok := f.Volumes[src]; !ok {
				t.Errorf("service %s uses volume %s, which is not declared", name, src)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes port %q on every interface; bind it to 127.0.0.1", name, p)
			}
		}
	}
}

// TestComposeCommandsParse checks the printbridge commands of the compose
// file with the real flag sets, and the mounted configs as check-config does.
func TestComposeCommandsParse(t *testing.T) {
	f := loadCompose(t)

	edgeSvc := f.Services["edge"]
	words := commandWords(t, edgeSvc.Command)
	if len(words) != 1 {
		t.Fatalf("edge command = %q, want one shell line", words)
	}
	_, edgeLine, ok := strings.Cut(words[0], "exec printbridge edge ")
	if !ok {
		t.Fatalf("edge command %q does not exec printbridge edge", words[0])
	}
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o edgeOptions
	o.register(fs)
	if err := fs.Parse(strings.Fields(edgeLine)); err != nil {
		t.Errorf("edge flags in docker-compose.yml: %v", err)
	}
	if !o.integrations.homeAssistant || o.metricsListen != "0.0.0.0:9464" {
		t.Errorf("compose edge: homeassistant=%v metrics-listen=%q, want discovery on and metrics for Prometheus",
			o.integrations.homeAssistant, o.metricsListen)
	}

	worker := f.Services["worker"]
	args := commandWords(t, worker.Command)
	if len(args) == 0 || args[0] != "worker" {
		t.Fatalf("worker command = %q, want printbridge worker", args)
	}
	wfs := flag.NewFlagSet("worker", flag.ContinueOnError)
	wfs.SetOutput(io.Discard)
	var wo workerOptions
	wo.register(wfs)
	if err := wfs.Parse(args[1:]); err != nil {
		t.Fatalf("worker flags in docker-compose.yml: %v", err)
	}
	var host string
	for _, v := range worker.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == wo.config {
			host = filepath.Join(repoRoot, parts[0])
		}
	}
	if host == "" {
		t.Fatalf("the worker's --config %s is not mounted from the repository", wo.config)
	}
	_, problems, err := hooks.LoadConfig(host)
	if err != nil {
		t.Fatalf("check-config %s: %v", host, err)
	}
	for _, p := range problems {
		if p.Severity == hooks.SeverityError {
			t.Errorf("check-config %s: %s", host, p)
		}
	}
}

func TestDockerfileBaseImages(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`)
	matches := from.FindAllStringSubmatch(string(data), -1)
	if len(matches) < 2 {
		t.Fatalf("Dockerfile has %d FROM lines, want a build and a runtime stage", len(matches))
	}
	for _, m := range matches {
		if !publishedImages[m[1]] {
			t.Errorf("Dockerfile uses base image %q, which is not a known published image", m[1])
		}
	}
	copyFrom := regexp.MustCompile(`(?m)^COPY --from=build /src/(\S+)`)
	for _, m := range copyFrom.FindAllStringSubmatch(string(data), -1) {
		if _, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil {
			t.Errorf("Dockerfile copies %s, which is not in the repository: %v", m[1], err)
		}
	}
}

// metricNamesRecorder is a Registerer that records the names of the
// metrics registered on it, including vectors that have no series yet.
type metricNamesRecorder struct {
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *metricNamesRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *metricNamesRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *metricNamesRecorder) Unregister(prometheus.Collector) bool { return false }

type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "dashboards", "printbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard JSON does not parse: %v", err)
	}
	return d
}

// registeredMetric returns a function that reports whether the edge or
// the worker registers the metric name, vectors without series included.
// A histogram's _bucket, _sum and _count series count as its name.
func registeredMetric(t *testing.T) func(name string) bool {
	t.Helper()
	rec := &metricNamesRecorder{names: map[string]bool{}}
	edge.NewMetrics(rec)
	edgeCount := len(rec.names)
	hooks.NewMetrics(rec)
	if edgeCount == 0 || len(rec.names) == edgeCount {
		t.Fatalf("recorded %d edge and %d worker metric names, want some of each", edgeCount, len(rec.names)-edgeCount)
	}
	return func(name string) bool {
		if rec.names[name] {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && rec.names[base] {
				return true
			}
		}
		return false
	}
}

// printbridgeMetric matches the printbridge metric names in a PromQL
// expression.
var printbridgeMetric = regexp.MustCompile(`\bprintbridge_[a-z_]+`)

func TestGrafanaDashboardMetricNames(t *testing.T) {
	d := loadDashboard(t)
	known := registeredMetric(t)
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			names := printbridgeMetric.FindAllString(target.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q queries no printbridge metric: %s", p.Title, target.Expr)
			}
			for _, name := range names {
				queried[name] = true
				if !known(name) {
					t.Errorf("panel %q queries %s, which neither the edge nor the worker registers", p.Title, name)
				}
			}
		}
	}
	for _, want := range []string{"printbridge_printer_temperature_celsius", "printbridge_printer_target_temperature_celsius",
		"printbridge_print_progress_ratio", "printbridge_printer_state", "printbridge_events_published_total",
		"printbridge_serial_resends_total", "printbridge_serial_ok_latency_seconds_bucket", "printbridge_event_queue_depth",
		"printbridge_hook_runs_total", "printbridge_hook_duration_seconds_bucket"} {
		if !queried[want] {
			t.Errorf("the dashboard has no panel for %s", want)
		}
	}
}

func TestGrafanaProvisioningMatchesCompose(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources = %+v, want one Prometheus data source", ds.Datasources)
	}
	d := loadDashboard(t)
	for _, p := range d.Panels {
		if p.Datasource.UID != ds.Datasources[0].UID {
			t.Errorf("panel %q uses data source %q, provisioning defines %q", p.Title, p.Datasource.UID, ds.Datasources[0].UID)
		}
	}
	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy", "grafana", "provisioning", "dashboards", "printbridge.yml"), &providers)
	if len(providers.Providers) != 1 {
		t.Fatalf("dashboard providers = %+v, want one", providers.Providers)
	}
	grafana := loadCompose(t).Services["grafana"]
	mounted := false
	for _, v := range grafana.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == "./deploy/grafana/dashboards" && parts[1] == providers.Providers[0].Options.Path {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("compose does not mount deploy/grafana/dashboards at the provider path %s", providers.Providers[0].Options.Path)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
}

// promtool returns the path of promtool, installing Debian's prometheus
// package when it is missing and the test runs as root.
func promtool(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("promtool"); err == nil {
		return path
	}
	if os.Geteuid() != 0 {
		t.Fatal("promtool not found: install Debian's prometheus package, which `make test` does")
	}
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		// A new machine may have no package lists yet.
		if out, uerr := exec.Command("apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			t.Fatalf("apt-get update failed: %v\n%s", uerr, out)
		}
		if err := install(); err != nil {
			t.Fatalf("installing prometheus for promtool failed: %v", err)
		}
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool still missing after installing prometheus: %v", err)
	}
	return path
}

func TestPrometheusConfigsPassPromtool(t *testing.T) {
	tool := promtool(t)
	for _, name := range []string{"prometheus.yml", "prometheus-compose.yml"} {
		path := filepath.Join(repoRoot, "deploy", "prometheus", name)
		out, err := exec.Command(tool, "check", "config", path).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check config %s: %v\n%s", name, err, out)
		}
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"), &cfg)
	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], st.Targets...)
		}
	}
	if !slices.Equal(targets["printbridge-edge"], []string{"127.0.0.1:9464"}) ||
		!slices.Equal(targets["printbridge-worker"], []string{"127.0.0.1:9465"}) {
		t.Errorf("scrape targets = %v, want the edge on 127.0.0.1:9464 and the worker on 127.0.0.1:9465", targets)
	}
}

// alertRulesPath is the rule file that both Prometheus configs load.
var alertRulesPath = filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml")

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRulesPassPromtool(t *testing.T) {
	tool := promtool(t)
	out, err := exec.Command(tool, "check", "rules", alertRulesPath).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", alertRulesPath, err, out)
	}
	// The unit tests name the rule file relative to their own directory.
	tests := filepath.Join(repoRoot, "testdata", "prometheus", "alerts_test.yml")
	out, err = exec.Command(tool, "test", "rules", tests).CombinedOutput()
	if err != nil {
		t.Errorf("promtool test rules %s: %v\n%s", tests, err, out)
	}
}

func TestAlertRulesMetricNames(t *testing.T) {
	known := registeredMetric(t)
	var rules alertRules
	readYAML(t, alertRulesPath, &rules)
	count := 0
	for _, group := range rules.Groups {
		for _, rule := range group.Rules {
			count++
			names := printbridgeMetric.FindAllString(rule.Expr, -1)
			if len(names) == 0 && !strings.Contains(rule.Expr, "up{") {
				t.Errorf("alert %s queries neither a printbridge metric nor up: %s", rule.Alert, rule.Expr)
			}
			for _, name := range names {
				if !known(name) {
					t.Errorf("alert %s queries %s, which neither the edge nor the worker registers", rule.Alert, name)
				}
			}
			if rule.For == "" {
				t.Errorf("alert %s has no for: duration", rule.Alert)
			}
			if severity := rule.Labels["severity"]; severity != "warning" && severity != "critical" {
				t.Errorf("alert %s has severity %q, want warning or critical", rule.Alert, severity)
			}
			if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a summary or a description annotation", rule.Alert)
			}
		}
	}
	if count == 0 {
		t.Fatalf("%s has no rules", alertRulesPath)
	}
}

// TestComposeMountsAlertRules checks that Prometheus in compose finds the
// rule file that prometheus-compose.yml names, relative to the directory
// where compose mounts that config.
func TestComposeMountsAlertRules(t *testing.T) {
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy", "prometheus", "prometheus-compose.yml"), &cfg)
	if len(cfg.RuleFiles) == 0 {
		t.Fatal("prometheus-compose.yml has no rule_files")
	}
	mounts := map[string]string{}
	for _, v := range loadCompose(t).Services["prometheus"].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounts[parts[1]] = parts[0]
		}
	}
	configDir := ""
	for target, source := range mounts {
		if source == "./deploy/prometheus/prometheus-compose.yml" {
			configDir = filepath.Dir(target)
		}
	}
	if configDir == "" {
		t.Fatal("compose does not mount deploy/prometheus/prometheus-compose.yml in the prometheus service")
	}
	for _, rule := range cfg.RuleFiles {
		target := rule
		if !filepath.IsAbs(rule) {
			target = filepath.Join(configDir, rule)
		}
		if got := mounts[target]; got != "./deploy/prometheus/alerts.yml" {
			t.Errorf("compose mounts %q at %s, want ./deploy/prometheus/alerts.yml", got, target)
		}
	}
}

// TestEdgeMetricsPassPromtool scrapes a running edge that printed a file
// and lints the exposition with promtool check metrics.
func TestEdgeMetricsPassPromtool(t *testing.T) {
	tool := promtool(t)
	url := brokertest.StartMosquitto(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	vcfg := virtual.DefaultConfig()
	vcfg.Speed = 0
	vp, err := virtual.New(vcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vpCtx, stopVP := context.WithCancel(context.Background())
	vpDone := make(chan error, 1)
	go func() { vpDone <- vp.Run(vpCtx) }()
	defer func() {
		stopVP()
		<-vpDone
		// Cancelling Run leaves the pty master and its inotify instance
		// open; only Close releases them.
		_ = vp.Close()
	}()

	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o750); err != nil {
		t.Fatal(err)
	}
	gcode, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "gcode", e2eFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, e2eFile), gcode, 0o600); err != nil {
		t.Fatal(err)
	}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	log := &syncBuffer{}
	opts := edgeOptions{
		port: vp.Path(), baud: 115200, printerID: "metrics1", filesDir: files, dataDir: filepath.Join(dir, "edge"),
		maxLineLength: 96, autoConnect: true, metricsListen: metricsAddr,
		bus: busOptions{mqttURL: url, baseTopic: bridge.DefaultBase},
	}
	go func() { edgeDone <- runEdgeWith(edgeCtx, opts, slog.New(slog.NewTextHandler(log, nil)), nil) }()
	defer func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge stopped with error: %v", err)
		}
		if t.Failed() {
			t.Logf("edge log:\n%s", log.String())
		}
	}()

	scrape := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	waitFor(t, "temperatures in /metrics", 30*time.Second, func() bool {
		return strings.Contains(scrape(), "printbridge_printer_temperature_celsius{")
	})
	cmdBus := newObserverBus(t, url)
	job := fmt.Sprintf(`{"id": "metrics-job", "action": "start", "path": %q}`, e2eFile)
	if err := cmdBus.PublishCommand(context.Background(), "metrics1", bridge.CommandJob, []byte(job)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PrintDone counted in /metrics", 120*time.Second, func() bool {
		return strings.Contains(scrape(), `printbridge_events_published_total{event="PrintDone"}`)
	})

	body := scrape()
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range []string{"printbridge_serial_ok_latency_seconds_bucket", "printbridge_print_progress_ratio",
		"printbridge_printer_state", "printbridge_serial_lines_sent_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// TestSystemdUnitsVerify runs systemd-analyze verify on the units, with
// ExecStart pointed at an existing binary, and checks the settings the
// edge's serial access depends on.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: install Debian's systemd package to check the units")
	}
	dir := t.TempDir()
	units := map[string]string{
		"printbridge-edge@.service":  "printbridge-edge@mk3s.service",
		"printbridge-worker.service": "printbridge-worker.service",
	}
	for src, dst := range units {
		data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "systemd", src))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, want := range []string{"User=printbridge", "Restart=on-failure", "NoNewPrivileges=yes", "ExecStart=/usr/local/bin/printbridge "} {
			if !strings.Contains(text, "\n"+want) {
				t.Errorf("%s has no %s", src, want)
			}
		}
		if strings.HasPrefix(src, "printbridge-edge") {
			if !strings.Contains(text, "\nSupplementaryGroups=dialout") {
				t.Errorf("%s does not add the dialout group", src)
			}
			if strings.Contains(text, "\nPrivateDevices=yes") {
				t.Errorf("%s sets PrivateDevices=yes, which hides the serial port", src)
			}
		}
		text = strings.ReplaceAll(text, "ExecStart=/usr/local/bin/printbridge ", "ExecStart=/bin/true ")
		if err := os.WriteFile(filepath.Join(dir, dst), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify"}
	for _, dst := range units {
		args = append(args, filepath.Join(dir, dst))
	}
	out, err := exec.Command(analyze, args...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestUdevRulesShape(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "udev", "99-printbridge.rules"))
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile(`^(SUBSYSTEM|ATTRS\{[a-zA-Z]+\}|ENV\{[A-Z_]+\}|SYMLINK|GROUP|MODE|TAG)(==|\+=|=)"[^"]*"$`)
	rules := 0
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rules++
		for _, tok := range strings.Split(line, ", ") {
			if !token.MatchString(tok) {
				t.Errorf("line %d: token %q is not a udev match or assignment this file uses", i+1, tok)
			}
		}
		for _, want := range []string{`SUBSYSTEM=="tty"`, `SYMLINK+="printbridge/`, `ENV{SYSTEMD_WANTS}+="printbridge-edge@`} {
			if !strings.Contains(line, want) {
				t.Errorf("line %d has no %s", i+1, want)
			}
		}
	}
	if rules == 0 {
		t.Error("the udev file has no rule")
	}
}

func newObserverBus(t *testing.T, url string) *mqtt.Bus {
	t.Helper()
	b, err := mqtt.New(context.Background(), mqtt.Config{URL: url, ClientID: "deploy-observer"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
