#!/usr/bin/env python3
"""Writes the Grafana dashboards of dashboards/ (run it after editing; commit both)."""
import json, os
OUT=os.path.join(os.path.dirname(os.path.abspath(__file__)),'dashboards')
PROM={"type":"prometheus","uid":"${prometheus}"}
LOKI={"type":"loki","uid":"${loki}"}
TEMPO={"type":"tempo","uid":"${tempo}"}
def ds_var(name, kind, label):
    return {"name":name,"label":label,"type":"datasource","query":kind,"current":{},"hide":0}
def query_var(name, label, query, multi=True):
    return {"name":name,"label":label,"type":"query","datasource":PROM,"query":{"query":query,"refId":"PrometheusVariableQueryEditor-VariableQuery"},
            "definition":query,"refresh":2,"includeAll":True,"multi":multi,"allValue":".*","current":{"text":"All","value":"$__all"},"sort":1,"hide":0}
class D:
    def __init__(s,title,uid,desc,extra_vars=()):
        s.d={"title":title,"uid":uid,"description":desc,"tags":["sightline"],"schemaVersion":39,"version":1,"editable":True,
             "time":{"from":"now-1h","to":"now"},"refresh":"30s","timezone":"browser",
             "templating":{"list":[ds_var("prometheus","prometheus","Prometheus"),ds_var("loki","loki","Loki"),ds_var("tempo","tempo","Tempo")]+list(extra_vars)},
             "annotations":{"list":[]},"panels":[]}
        s.y=0; s.x=0; s.id=1
    def panel(s,kind,title,targets,ds,w=12,h=8,unit=None,desc=None,options=None,stack=False):
        if s.x+w>24: s.x=0; s.y+=h
        p={"id":s.id,"type":kind,"title":title,"datasource":ds,"gridPos":{"x":s.x,"y":s.y,"w":w,"h":h},"targets":[]}
        if desc: p["description"]=desc
        for i,t in enumerate(targets):
            t=dict(t); t["refId"]=chr(65+i); t["datasource"]=ds
            p["targets"].append(t)
        fc={"defaults":{},"overrides":[]}
        if unit: fc["defaults"]["unit"]=unit
        if stack: fc["defaults"]["custom"]={"stacking":{"mode":"normal"},"fillOpacity":30}
        p["fieldConfig"]=fc
        if options: p["options"]=options
        s.d["panels"].append(p); s.id+=1; s.x+=w
        if s.x>=24: s.x=0; s.y+=h
    def row(s,title):
        if s.x: s.x=0; s.y+=8
        s.d["panels"].append({"id":s.id,"type":"row","title":title,"collapsed":False,"gridPos":{"x":0,"y":s.y,"w":24,"h":1},"panels":[]})
        s.id+=1; s.y+=1
    def save(s,name):
        with open(os.path.join(OUT,name),'w') as f: json.dump(s.d,f,indent=2); f.write("\n")
def prom(expr,legend=None,instant=False,fmt=None):
    t={"expr":expr,"range":not instant,"instant":instant}
    if legend: t["legendFormat"]=legend
    if fmt: t["format"]=fmt
    return t
def loki(expr): return {"expr":expr,"queryType":"range"}
def tempo(q): return {"queryType":"traceql","query":q,"limit":50,"tableType":"traces"}
RI="$__rate_interval"
SVC='service_name=~"$service"'
svc_var=query_var("service","Service","label_values(http_server_request_duration_seconds_count, service_name)")
route_var=query_var("route","Route",'label_values(http_server_request_duration_seconds_count{service_name=~"$service"}, http_route)')

# 1. API traffic
d=D("Sightline: API traffic","sightline-api-traffic","HTTP calls each service serves and makes, by route, method and status, as Sightline captured them in the kernel.",[svc_var,route_var])
S=f'service_name=~"$service", http_route=~"$route"'
d.row("Served (server side)")
d.panel("timeseries","Requests per second by service",[prom(f'sum by (service_name) (rate(http_server_request_duration_seconds_count{{{S}}}[{RI}]))',"{{service_name}}")],PROM,unit="reqps")
d.panel("timeseries","Server errors (5xx) per second by service",[prom(f'sum by (service_name) (rate(http_server_request_duration_seconds_count{{{S}, http_response_status_code=~"5.."}}[{RI}]))',"{{service_name}}")],PROM,unit="reqps")
d.panel("timeseries","p95 latency by route",[prom(f'histogram_quantile(0.95, sum by (le, service_name, http_route) (rate(http_server_request_duration_seconds_bucket{{{S}}}[{RI}])))',"{{service_name}} {{http_route}}")],PROM,unit="s")
d.panel("timeseries","Requests per second by status code",[prom(f'sum by (http_response_status_code) (rate(http_server_request_duration_seconds_count{{{S}}}[{RI}]))',"{{http_response_status_code}}")],PROM,unit="reqps",stack=True)
d.panel("table","Routes: calls, errors and mean latency over the range",[
    prom(f'sum by (service_name, http_request_method, http_route) (increase(http_server_request_duration_seconds_count{{{S}}}[$__range]))',instant=True,fmt="table"),
    prom(f'sum by (service_name, http_request_method, http_route) (increase(http_server_request_duration_seconds_count{{{S}, http_response_status_code=~"5.."}}[$__range]))',instant=True,fmt="table"),
    prom(f'sum by (service_name, http_request_method, http_route) (increase(http_server_request_duration_seconds_sum{{{S}}}[$__range])) / sum by (service_name, http_request_method, http_route) (increase(http_server_request_duration_seconds_count{{{S}}}[$__range]))',instant=True,fmt="table")],PROM,w=24,h=10,
    options={"showHeader":True},desc="A: calls, B: server errors (5xx), C: mean duration in seconds.")
d.row("Called (client side)")
d.panel("timeseries","Outgoing requests per second by destination",[prom(f'sum by (service_name, server_address, peer_service) (rate(http_client_request_duration_seconds_count{{{SVC}}}[{RI}]))',"{{service_name}} → {{peer_service}} {{server_address}}")],PROM,unit="reqps")
d.panel("timeseries","Outgoing p95 latency by destination",[prom(f'histogram_quantile(0.95, sum by (le, server_address) (rate(http_client_request_duration_seconds_bucket{{{SVC}}}[{RI}])))',"{{server_address}}")],PROM,unit="s")
d.panel("timeseries","Outgoing failures per second (4xx, 5xx, no response)",[prom(f'sum by (service_name, server_address, error_type) (rate(http_client_request_duration_seconds_count{{{SVC}, error_type!=""}}[{RI}]))',"{{service_name}} → {{server_address}} {{error_type}}")],PROM,unit="reqps",w=24)
d.row("Traces")
d.panel("table","Recent traces of the selected services",[tempo('{resource.service.name=~"$service" && span.http.route=~"$route"}')],TEMPO,w=24,h=10)
d.panel("table","Slow or failed calls",[tempo('{resource.service.name=~"$service" && (status = error || duration > 1s)}')],TEMPO,w=24,h=10)
d.save("api-traffic.json")

# 2. inventory
d=D("Sightline: API inventory","sightline-api-inventory","Every endpoint Sightline saw, compared with the published OpenAPI specs: documented, shadow (undocumented) and zombie (deprecated or retired but still called).",[query_var("service","Service","label_values(sightline_inventory_endpoints, service_name)")])
I='service_name=~"$service"'
for cls,title in [("documented","Documented endpoints"),("shadow","Shadow endpoints (not in any spec)"),("zombie","Zombie endpoints (deprecated, still called)"),("no-spec","Endpoints of APIs without a spec")]:
    d.panel("stat",title,[prom(f'sum(max by (service_name, sightline_endpoint_direction) (sightline_inventory_endpoints{{{I}, sightline_inventory_class="{cls}"}}))',instant=True)],PROM,w=6,h=5)
d.panel("table","Endpoints by service, direction and class",[prom(f'max by (service_name, sightline_endpoint_direction, sightline_inventory_class) (sightline_inventory_endpoints{{{I}}})',instant=True,fmt="table")],PROM,w=12,h=10)
d.panel("timeseries","Endpoints by class over time",[prom(f'sum by (sightline_inventory_class) (max by (service_name, sightline_endpoint_direction, sightline_inventory_class) (sightline_inventory_endpoints{{{I}}}))',"{{sightline_inventory_class}}")],PROM,w=12,h=10)
d.row("Cluster-wide: every node's endpoints, each once")
EK="service_name, sightline_endpoint_direction, http_request_method, http_route"
OK="service_name, http_request_method, http_route"
d.panel("table","Endpoints per service and class (union of the nodes)",[prom(f'count by (service_name, sightline_inventory_class) (count by ({EK}, sightline_inventory_class) (sightline_inventory_endpoint_info{{{I}}}))',instant=True,fmt="table")],PROM,w=12,h=10,
        desc="Each endpoint counted once however many nodes saw it (the per-node gauges above count the largest node).")
d.panel("table","Endpoints first seen in the last 7 days",[prom(f'1000 * (min by ({EK}) (sightline_inventory_endpoint_first_seen_seconds{{{I}}}) > time() - 604800)',instant=True,fmt="table")],PROM,w=12,h=10,unit="dateTimeAsIso",
        desc="Value: when the first node saw it.")
for cls,title in [("shadow","Shadow endpoints in the cluster"),("zombie","Zombie endpoints in the cluster")]:
    d.panel("table",title,[
        prom(f'count by ({EK}) (sightline_inventory_endpoint_info{{{I}, sightline_inventory_class="{cls}"}})',instant=True,fmt="table"),
        prom(f'sum by ({EK}) (sightline_inventory_endpoint_calls_total{{{I}}}) and count by ({EK}) (sightline_inventory_endpoint_info{{{I}, sightline_inventory_class="{cls}"}})',instant=True,fmt="table")],PROM,w=12,h=10,
        desc="A: nodes that saw it, B: calls of every node.")
d.panel("table","Spec operations no node called in the last 30 days (unused)",[prom(f'max by ({OK}) (sightline_inventory_operation_info{{{I}}}) unless max by ({OK}) (sightline_inventory_endpoint_last_seen_seconds{{{I}}} > time() - 2592000)',instant=True,fmt="table")],PROM,w=24,h=10,
        desc="Judged over every node: an operation one replica serves is not unused because another replica's node never saw it. The window is bounded by the metrics store's retention.")
d.panel("logs","Shadow and zombie endpoints discovered",[loki('{service_name="sightline"} | event_name="sightline.inventory.endpoint" | sightline_inventory_class=~"shadow|zombie" | service_name_extracted=~"$service"'.replace(' | service_name_extracted=~"$service"',''))],LOKI,w=24,h=10,
        desc="One record per endpoint discovered, first seen by this agent run, or reclassified; attributes carry the service, method, route, class and change.")
d.panel("logs","Every inventory change",[loki('{service_name="sightline"} | event_name="sightline.inventory.endpoint"')],LOKI,w=24,h=10)
d.row("Posture: risk, exposure, changes")
d.panel("table","Riskiest endpoints (risk score 0 to 10, highest node)",[prom(f'topk(25, max by ({EK}) (sightline_inventory_endpoint_risk{{{I}}}) > 0)',instant=True,fmt="table")],PROM,w=12,h=10,
        desc="The formula and each endpoint's reasons: sightline inventory --sort risk (README, Risk score).")
d.panel("table","Endpoints reached from the internet",[prom(f'count by ({EK}, sightline_endpoint_exposure) (sightline_inventory_endpoint_info{{{I}, sightline_endpoint_external="true"}})',instant=True,fmt="table")],PROM,w=12,h=10,
        desc="Callers with public addresses, directly or through a proxy on the same host (X-Forwarded-For). Value: nodes that saw it.")
d.panel("logs","Endpoint changes (new, gone quiet, new scheme, status class, client, fields)",[loki('{service_name="sightline"} | event_name="sightline.inventory.change"')],LOKI,w=24,h=10)
d.save("api-inventory.json")

# 3. findings
d=D("Sightline: zero-trust findings","sightline-findings","Findings raised from live traffic: unauthenticated successes, credentials in clear or in URLs, broken JWTs, sensitive data exposed, enumeration, shadow and zombie endpoints.",[query_var("service","Service","label_values(sightline_findings_raised_total, service_name)")])
F='service_name=~"$service"'
for sev in ["critical","high","medium","low"]:
    d.panel("stat",f"{sev.capitalize()} findings raised in the range",[prom(f'sum(increase(sightline_findings_raised_total{{{F}, sightline_finding_severity="{sev}"}}[$__range]))',instant=True)],PROM,w=6,h=5)
d.panel("timeseries","Findings raised by rule",[prom(f'sum by (sightline_finding_rule) (increase(sightline_findings_raised_total{{{F}}}[$__interval]))',"{{sightline_finding_rule}}")],PROM,stack=True)
d.panel("timeseries","Calls matching a rule per second, by service",[prom(f'sum by (service_name, sightline_finding_rule) (rate(sightline_findings_calls_total{{{F}}}[{RI}]))',"{{service_name}} {{sightline_finding_rule}}")],PROM,unit="reqps")
d.panel("table","Findings by rule and severity over the range",[prom(f'sum by (sightline_finding_rule_id, sightline_finding_rule, sightline_finding_severity, service_name) (increase(sightline_findings_raised_total{{{F}}}[$__range]))',instant=True,fmt="table")],PROM,w=24,h=10)
d.panel("logs","Findings (evidence without secrets)",[loki('{service_name="sightline"} | event_name="sightline.finding"')],LOKI,w=24,h=12)
d.panel("logs","High and critical findings",[loki('{service_name="sightline"} | event_name="sightline.finding" | sightline_finding_severity=~"high|critical"')],LOKI,w=24,h=10)
d.save("findings.json")

# 4. agent health
d=D("Sightline: agent health","sightline-agent-health","What each agent captured and dropped (and where), parse errors, export failures, TLS capture status, memory and CPU.",[query_var("instance","Agent (node)","label_values(sightline_events_captured_total, instance)")])
H='job="sightline", instance=~"$instance"'
d.panel("timeseries","Events captured per second",[prom(f'sum by (instance) (rate(sightline_events_captured_total{{{H}}}[{RI}]))',"{{instance}}")],PROM,unit="ops")
d.panel("timeseries","Dropped per second, by stage",[prom(f'sum by (sightline_drop_stage) (rate(sightline_events_dropped_total{{{H}}}[{RI}])) > 0',"{{sightline_drop_stage}}")],PROM,unit="ops",desc="kernel_*: in the kernel (ring buffer full, tables full); capture_queue/sink_queue: userspace queues; otlp_*: export queues; calls_abandoned: requests on connections the agent had to forget.")
d.panel("timeseries","Parse errors per second, by kind",[prom(f'sum by (sightline_parse_error) (rate(sightline_parse_errors_total{{{H}}}[{RI}]))',"{{sightline_parse_error}}")],PROM,unit="ops")
d.panel("timeseries","OTLP export failures per second, by signal",[prom(f'sum by (sightline_signal) (rate(sightline_export_failures_total{{{H}}}[{RI}]))',"{{sightline_signal}}")],PROM,unit="ops")
d.panel("timeseries","Agent memory (resident)",[prom(f'process_memory_usage_bytes{{{H}}}',"{{instance}}")],PROM,unit="bytes")
d.panel("timeseries","Agent CPU (cores)",[prom(f'sum by (instance, cpu_mode) (rate(process_cpu_time_seconds_total{{{H}}}[{RI}]))',"{{instance}} {{cpu_mode}}")],PROM,unit="short",stack=True)
d.panel("piechart","TLS processes by capture status",[prom(f'sum by (sightline_tls_status) (sightline_tls_process_status{{{H}}})',"{{sightline_tls_status}}",instant=True)],PROM,w=8,h=8)
d.panel("table","TLS capture status per process",[prom(f'max by (process_pid, process_executable_name, sightline_tls_status) (sightline_tls_process_status{{{H}}})',instant=True,fmt="table")],PROM,w=16,h=8,
        desc="captured: every TLS connection seen had its plaintext; partial / not_captured: some or none did (see `sightline tls`); ready: probes attached, no TLS connection yet; unsupported: a TLS implementation the probes cannot see.")
d.panel("table","Every internal counter",[prom(f'max by (sightline_counter) (sightline_agent_counter_total{{{H}}})',instant=True,fmt="table")],PROM,w=24,h=10)
d.save("agent-health.json")
