-- The python tool's image has matplotlib (Debian's 3.6, Agg backend, its font list built with
-- the image): its code may import it. The tool's allow-list was empty, which means the
-- validator's default list; it becomes that list with matplotlib (a tool without a list of its
-- own, on another image, still gets the default list, without matplotlib). A list an operator
-- set is kept, with matplotlib added.
UPDATE tools
SET allowed_imports = CASE
        WHEN cardinality(allowed_imports) = 0 THEN ARRAY[
            'numpy', 'scipy', 'math', 'cmath', 'json', 'csv', 'statistics', 'random', 'decimal',
            'fractions', 'itertools', 'functools', 'collections', 'dataclasses', 'typing',
            'datetime', 'time', 're', 'string', 'textwrap', 'enum', 'heapq', 'bisect', 'array',
            'copy', 'pprint', 'operator', 'matplotlib'
        ]::text[]
        ELSE array_append(allowed_imports, 'matplotlib')
    END,
    description = CASE
        WHEN description = 'Python 3 with numpy and scipy' THEN 'Python 3 with numpy, scipy and matplotlib'
        ELSE description
    END,
    updated_at = now()
WHERE name = 'python' AND NOT ('matplotlib' = ANY (allowed_imports));
