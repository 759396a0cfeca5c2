# Structural check of this fixture: every YAML parses, proposals follow the schema,
# every label matches exactly one improvement of its video. Usage: python3 check_fixture.py
import yaml, json, glob, collections, sys, os
os.chdir(os.path.dirname(os.path.abspath(__file__)))
bad = 0
nfiles = 0
for f in sorted(glob.glob('**/*.yaml', recursive=True)):
    try:
        list(yaml.safe_load_all(open(f))); nfiles += 1
    except Exception as e:
        print('YAML FAIL', f, e); bad += 1
props = {}
order = []
for f in sorted(glob.glob('proposals/*.json')):
    d = json.load(open(f))
    assert len(d['video_id']) == 11, f
    for k in ('video_id','title','description','analyzed_at','relevance','improvements'):
        assert k in d, (f, k)
    descs = []
    for grp, items in d['improvements'].items():
        for it in items:
            for k in ('category','type','description','implementation_notes','status','relevance'):
                assert k in it, (f, k)
            assert it['type'] in ('concept','pattern','implementation','enhancement','tool','integration'), it['type']
            assert it['status'] == 'pending'
            descs.append(it['description'])
    props[d['video_id']] = descs
    order.append(d['video_id'])
labels = yaml.safe_load(open('labels.yaml'))
allowed = {'already_deployed','dependency','architectural','capacity','duplicate','clean'}
hit = collections.Counter()
count = collections.Counter()
for l in labels:
    vid = l['video_id']
    if vid not in props: print('unknown video', vid); bad += 1; continue
    m = [i for i, d in enumerate(props[vid]) if l['match'].lower() in d.lower()]
    if len(m) != 1: print('MATCH', vid, l['match'], len(m)); bad += 1; continue
    hit[(vid, m[0])] += 1
    assert set(l['expect']) <= allowed, l['expect']
    assert l.get('evidence') and l.get('why')
    if 'clean' in l['expect']: assert l['expect'] == ['clean'] and l.get('scope') in ('existing','new','knowledge'), l
    if 'duplicate' in l['expect']:
        src = l['duplicate_of'].lower()
        assert any(src == d.lower() for v in order[:order.index(vid)+1] for d in props[v]), l
    for e in l['expect']: count[e] += 1
total = sum(len(v) for v in props.values())
missing = [(v, i) for v in props for i in range(len(props[v])) if (v, i) not in hit]
dups = [k for k, c in hit.items() if c > 1]
print('yaml files', nfiles, 'proposal improvements', total, 'labels', len(labels), 'unlabelled', missing, 'double-labelled', dups, 'errors', bad)
print(dict(count))
print('multi-label', sum(1 for l in labels if len(l['expect']) > 1))
sc = collections.Counter(l.get('scope') for l in labels if l['expect'] == ['clean'])
print('clean scopes', dict(sc))
sys.exit(1 if bad or missing or dups else 0)
