"""Built-in vocabularies and prompt templates for the generator.

No phrase here exists only in attack traffic: chain-of-thought requests, grading rubrics,
benchmark-style questions and "rewrite" requests all appear in normal traffic too (a student
asks for steps, an ed-tech app grades essays, an eval harness sends benchmark items). What
separates distillers is how much, how uniformly, across how many accounts — combinations.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- chat (humans)
OPENERS: dict[str, tuple[str, ...]] = {
    "en": (
        "Can you help me",
        "I need to",
        "Please",
        "How do I",
        "What is the best way to",
        "Could you",
        "Help me",
        "I'm trying to",
        "Quick question:",
        "Explain how to",
        "Hey, can you",
        "I want to",
        "Is it possible to",
        "Why does my attempt to",
        "Give me tips to",
        "What's a good way to",
    ),
    "zh": ("你能帮我", "请帮我", "我想要", "如何", "请问怎么", "能不能", "帮我"),
    "es": ("¿Puedes ayudarme a", "Necesito", "Por favor", "¿Cómo puedo", "Quiero", "Ayúdame a"),
    "de": ("Kannst du mir helfen", "Ich muss", "Bitte", "Wie kann ich", "Ich möchte"),
    "fr": ("Peux-tu m'aider à", "J'ai besoin de", "S'il te plaît", "Comment puis-je", "Je veux"),
    "ru": ("Помоги мне", "Мне нужно", "Пожалуйста", "Как мне", "Я хочу"),
    "ja": ("手伝ってください", "教えてください", "どうすれば", "お願いします"),
    "pt": ("Você pode me ajudar a", "Preciso", "Por favor", "Como posso", "Quero"),
}

TASK_VERBS = (
    "write",
    "fix",
    "understand",
    "summarize",
    "plan",
    "translate",
    "compare",
    "debug",
    "draft",
    "improve",
    "organize",
    "learn",
    "calculate",
    "design",
    "choose",
    "outline",
    "rewrite",
    "explain",
    "cook",
    "prepare for",
    "negotiate",
    "refactor",
    "optimize",
    "test",
)

TOPICS = (
    "a cover letter",
    "my python script",
    "a birthday party",
    "a marketing email",
    "my resume",
    "a trip to Lisbon",
    "a SQL query",
    "my React component",
    "a budget spreadsheet",
    "a wedding speech",
    "the French revolution",
    "quantum entanglement",
    "a job interview",
    "my garden",
    "a business plan",
    "a bash script",
    "a lasagna recipe",
    "a workout routine",
    "my thesis introduction",
    "a product description",
    "a docker compose file",
    "a landing page",
    "a bedtime story",
    "a complaint letter",
    "my kubernetes deployment",
    "a research proposal",
    "a LinkedIn post",
    "an apology message",
    "my tax return",
    "a chemistry lab report",
    "a podcast outline",
    "a regex for emails",
    "my Rust lifetimes",
    "a pandas dataframe",
    "a meeting agenda",
    "a novel chapter",
    "my flight connection",
    "a statistics homework",
    "a Go goroutine leak",
    "a poem about autumn",
    "a team retro",
    "an Excel formula",
    "my CSS grid layout",
    "a grant application",
    "a dog training plan",
    "a history essay",
    "a Java stack trace",
    "my home network",
    "a negotiation email",
    "a data pipeline",
    "a unit test",
    "a physics problem",
    "a philosophy essay",
    "a TypeScript type error",
    "a D&D campaign",
    "my sleep schedule",
    "a cold outreach email",
)

DETAILS = (
    "for tomorrow",
    "in a friendly tone",
    "with examples",
    "but keep it short",
    "for a beginner",
    "in bullet points",
    "without jargon",
    "for my boss",
    "that actually works",
    "before Friday",
    "for a class",
    "in plain English",
    "with more detail",
    "for my team",
    "that sounds natural",
    "for a small company",
    "on a tight budget",
    "quickly",
    "step by step",
    "for kids",
    "as a table",
    "in under 200 words",
    "for production",
    "with pros and cons",
)

FILLER_WORDS = (
    "also",
    "really",
    "just",
    "maybe",
    "actually",
    "honestly",
    "again",
    "still",
    "though",
    "anyway",
    "basically",
    "kind",
    "of",
    "stuck",
    "confused",
    "error",
    "weird",
    "thanks",
    "please",
    "urgent",
    "idea",
    "version",
    "last",
    "time",
    "it",
    "didn't",
    "work",
    "my",
    "friend",
    "said",
    "teacher",
    "manager",
    "client",
    "the",
    "old",
    "new",
    "one",
    "output",
    "looks",
    "wrong",
    "because",
    "when",
    "I",
    "run",
    "it",
    "with",
    "Monday",
    "data",
    "file",
    "numbers",
    "don't",
    "match",
    "nothing",
    "happens",
    "after",
    "update",
    "yesterday",
    "now",
)

FOLLOW_UPS = (
    "thanks! can you make it shorter?",
    "what about the second part?",
    "that didn't work, error:",
    "can you explain why?",
    "ok and how would I test it?",
    "make it more formal",
    "give me another example",
    "now translate it",
    "perfect. one more thing:",
    "hmm, that's not what I meant.",
    "can you add comments?",
    "what would you change?",
)

# --------------------------------------------------------------------------- system prompts
# what any archetype's requests may carry as a system prompt (Archetype.system_prompt_rate)
GENERIC_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are ChatGPT, a helpful assistant.",
    "Answer accurately.",
    "You are a senior engineer.",
)

# --------------------------------------------------------------------------- apps and batch
APP_SYSTEM_PROMPTS = (
    "You are a helpful customer support assistant for {org}. Answer politely and concisely.",
    "You are {org}'s shopping assistant. Recommend products from the catalogue only.",
    "You are a writing assistant inside {org} Docs. Improve the user's text.",
    "You are an AI tutor for {org}. Guide students without giving the final answer directly.",
    "You are {org}'s HR policy bot. Answer from the employee handbook.",
    "You are a travel planner for {org}. Suggest itineraries within budget.",
    "You are a coding assistant embedded in the {org} IDE plugin.",
    "You are an essay grader for {org}. Grade essays against the rubric and give feedback.",
)

APP_TEMPLATES = (
    "Customer message: {text}",
    "Summarize this support ticket #{num}: {text}",
    "Product question from user {name}: {text}",
    "Improve the following paragraph: {text}",
    "Student question ({num}): {text}",
    "Grade this essay using the rubric (score 1-{scale}): {text}",
    "Translate to {lang}: {text}",
    "Suggest a reply to: {text}",
    "Complete the code: def handler_{num}(event): {text}",
)

BATCH_TEMPLATES = (
    "Classify the sentiment of this review as positive, negative or neutral. Review: {text}",
    "Extract the invoice number, date and total from the document {num}: {text}",
    "Assign one category from [billing, shipping, returns, other] to ticket {num}: {text}",
    "Translate the product title {num} into German: {text}",
    "Summarize call transcript {num} in two sentences: {text}",
    "Redact personal data from record {num}: {text}",
    "Generate SEO keywords for SKU {num}: {text}",
)

ORGS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Vandelay",
    "Pied Piper",
    "Dunder",
    "Gringotts",
    "Oscorp",
)

NAMES = (
    "Alice",
    "Bob",
    "Carlos",
    "Dana",
    "Elif",
    "Femi",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
)

# --------------------------------------------------------------------------- benchmark / eval
# the first word of self-instruct-like tasks
INSTRUCTION_VERBS = ("Write", "Explain", "Describe", "Generate", "List", "Classify", "Summarize")
# starts of the short prompts of logit extraction probes
PROBE_STARTS = ("The", "A", "In", "Once", "Token", "Q:", "Hello", "Translate:")

MC_SUBJECTS = (
    "high school biology",
    "college physics",
    "moral scenarios",
    "econometrics",
    "world history",
    "abstract algebra",
    "clinical knowledge",
    "computer security",
    "jurisprudence",
    "virology",
    "formal logic",
    "astronomy",
    "marketing",
    "nutrition",
    "philosophy",
    "professional law",
)

MATH_OBJECTS = (
    "apples",
    "marbles",
    "pages",
    "tickets",
    "cookies",
    "miles",
    "dollars",
    "students",
    "boxes",
    "eggs",
    "hours",
    "liters",
    "stamps",
    "cards",
    "trees",
    "bricks",
)

CODE_TASKS = (
    "returns the longest palindromic substring",
    "merges two sorted lists",
    "checks whether a number is prime",
    "computes the edit distance of two strings",
    "parses a CSV line with quoted fields",
    "finds the k most frequent elements",
    "implements an LRU cache",
    "validates a sudoku board",
    "serialises a binary tree",
    "returns all permutations of a list",
    "computes the median of two sorted arrays",
    "detects a cycle in a linked list",
    "evaluates a reverse polish expression",
    "implements binary search on a rotated array",
    "counts islands in a grid",
    "schedules tasks with a cooldown",
    "converts roman numerals to integers",
)

# languages named in coding asks
PROGRAMMING_LANGUAGES = ("Python", "TypeScript", "Go", "Rust", "Java", "C++", "C#", "Kotlin")

AGENT_TASKS = (
    "Find a free slot next week and book a meeting with {name}",
    "Look up order {num} and issue a refund if it was damaged",
    "Search the repository for failing tests and open a pull request fixing {num} of them",
    "Book the cheapest flight to {city} on the {num}th",
    "Read the latest {num} emails and draft replies to the urgent ones",
    "Query the sales database for region {num} and plot revenue by month",
    "Check the weather in {city} and update the event page",
    "Create a Jira ticket for bug {num} and assign it to {name}",
)

CITIES = (
    "Berlin",
    "Tokyo",
    "Nairobi",
    "Lima",
    "Oslo",
    "Seoul",
    "Austin",
    "Porto",
    "Hanoi",
    "Cairo",
    "Toronto",
    "Mumbai",
    "Warsaw",
    "Bogota",
    "Perth",
    "Dublin",
)

# --------------------------------------------------------------------------- elicitation phrasing
# Used by attackers heavily and by normal users occasionally.
COT_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "Think step by step and show your full reasoning before the final answer.",
        "Articulate the internal reasoning behind your answer step by step.",
        "Explain your reasoning in detail, then give the answer.",
        "Let's think step by step.",
        "Walk through your chain of thought carefully before answering.",
    ),
    "zh": ("请一步一步地思考，并详细写出你的推理过程。", "请逐步推理，最后给出答案。"),
    "es": (
        "Piensa paso a paso y muestra todo tu razonamiento.",
        "Explica tu razonamiento paso a paso.",
    ),
    "de": ("Denke Schritt für Schritt und zeige deine Begründung.",),
    "fr": ("Réfléchis étape par étape et montre ton raisonnement.",),
    "ru": ("Рассуждай шаг за шагом и покажи ход мыслей.",),
    "ja": ("ステップバイステップで考え、推論を示してください。",),
    "pt": ("Pense passo a passo e mostre seu raciocínio.",),
}

RUBRIC_TEMPLATES = (
    "You are a strict grader. Score the following response from 1 to {scale} for helpfulness, "
    "correctness and harmlessness, and justify each score. Prompt: {text} Response: {text2}",
    "Evaluate the answer below against this rubric: accuracy (0-{scale}), reasoning (0-{scale}), "
    "style (0-{scale}). Output JSON with scores. Question: {text} Answer: {text2}",
    "Which of the two responses is better, A or B? Grade both on a 1-{scale} scale. "
    "A: {text} B: {text2}",
)

# Classification services: one label back (max_tokens=1), its log-probabilities as a
# confidence, often a logit_bias that allows only the label tokens. The same request shape as
# logit extraction probes, for an ordinary product.
CLASSIFY_TEMPLATES = (
    "Is the following review positive or negative? Answer with one word. Review: {text}",
    "Label ticket {num} as billing, shipping, returns or other. Reply with the label only: {text}",
    "Is this message spam? Answer yes or no. Message: {text}",
    "Which category fits product {num} best: electronics, home, fashion or toys? {text}",
    "Does the following comment break the community rules? Answer yes or no: {text}",
    "Rate the urgency of this request from 1 to {scale}. Reply with the number only: {text}",
)

# Moderation apps: users' posts rewritten before publishing. "Rewrite safely" prompts at
# volume from an ordinary product (the hard negative of safety-behaviour harvesting).
MODERATION_TEMPLATES = (
    "Rewrite this user comment so it is safe to publish and policy-compliant: {text}",
    "Rewrite the following forum post in a more neutral tone, removing anything harmful: {text}",
    "Rewrite this chat message to be harmless and polite, keeping its meaning: {text}",
    "Rewrite the product review below so it follows our content policy: {text}",
)

REWRITE_TEMPLATES = (
    "Rewrite the following text so that it is safe and policy-compliant, keeping the meaning: "
    "{text}",
    "Rewrite this answer to remove anything harmful while staying helpful: {text}",
    "Paraphrase the following response in a safer, more neutral tone: {text}",
)
